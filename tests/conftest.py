"""Shared fixtures: an isolated artifact/tuning cache, the real CLI, and small campaign files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOULEBENCH = Path(sys.executable).parent / "joulebench"

# Fast protocol for tests: enough samples for percentiles, not for publication.
FAST_PROTOCOL = """
[protocol]
warmup_runs = 1
warmup_s = 0.0
min_runs = 5
min_duration_s = 0.0
repeats = 2
"""


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("jb-cache")
    os.environ["JOULEBENCH_CACHE"] = str(d)
    return d


def run_cli(*args: str, check: bool = False, timeout: int = 600, path: list[Path] = ()) -> subprocess.CompletedProcess:
    """The installed `joulebench` script; `path`: extra import roots (e.g. a plugin installed with --target)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [ROOT, *path])), "COLUMNS": "200"}
    r = subprocess.run([str(JOULEBENCH), *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"joulebench {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def write_campaign(path: Path, body: str, name: str = "t", protocol: str = FAST_PROTOCOL) -> Path:
    path.write_text(f'[campaign]\nname = "{name}"\n' + textwrap.dedent(body) + protocol)
    return path
