"""Facts about the host and its software, for run manifests."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from targets.host_cpu import cpu_model

PACKAGES = ("joulebench", "torch", "apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "numpy", "pandas")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def git_commit(cwd: str | None = None) -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or os.path.dirname(__file__),
                           capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or os.path.dirname(__file__),
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def describe() -> dict:
    mem = None
    try:
        meminfo = open("/proc/meminfo").read()
    except OSError:
        meminfo = ""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal"):
            mem = round(int(line.split()[1]) / 2**20, 1)
    return {"hostname": platform.node(), "os": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "memory_gib": mem}
