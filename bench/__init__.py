"""Everything around the runs: campaigns, runner, measurement protocol, results, reports, CLI."""
