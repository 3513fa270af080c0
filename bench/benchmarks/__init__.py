"""Benchmark scripts: each prints its figures side by side from one run and ends with one JSON line."""
