"""Facts about the host and its software, for run manifests and device snapshots."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("joulebench", "torch", "apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "numpy", "pandas")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_snapshot(root: str = "/") -> dict:
    """CPU frequencies (kHz), governors and thermal-zone temperatures (deg C) under `root`."""
    base = Path(root)
    freqs = {}
    for f in sorted(glob.glob(str(base / "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))):
        v = _read(f)
        if v and v.isdigit():
            freqs[Path(f).parts[-3]] = int(v)
    governors = sorted({g for f in glob.glob(str(base / "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"))
                        if (g := _read(f))})
    temps = {}
    for zone in sorted(glob.glob(str(base / "sys/class/thermal/thermal_zone*"))):
        t, kind = _read(f"{zone}/temp"), _read(f"{zone}/type") or Path(zone).name
        if t and t.lstrip("-").isdigit():
            temps[kind] = int(t) / 1000.0
    return {"cpu_khz": freqs, "governors": governors, "temps_c": temps}


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
    from targets.host_cpu import cpu_model

    mem = None
    meminfo = _read("/proc/meminfo") or ""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal"):
            mem = round(int(line.split()[1]) / 2**20, 1)
    return {"hostname": platform.node(), "os": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "memory_gib": mem}
