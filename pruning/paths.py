"""Where joulebench keeps its content-addressed caches; importable without torch (for fast commands)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of every content-addressed cache (variants, artifacts, tuning records)."""
    return Path(os.environ.get("JOULEBENCH_CACHE", Path.home() / ".cache" / "joulebench"))
