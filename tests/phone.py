"""A phone stand-in for the remote path: a device tree (battery, thermal, cpufreq) and the phone's
tvm_rpc binary, replaced by a script with the same command line serving TVM's real RPC protocol."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_tree(root: Path, current_ua: int = -600_000, voltage_uv: int = 3_900_000, status: str = "Discharging") -> Path:
    bat = root / "sys/class/power_supply/battery"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "current_now").write_text(f"{current_ua}\n")
    (bat / "voltage_now").write_text(f"{voltage_uv}\n")
    (bat / "status").write_text(f"{status}\n")
    tz = root / "sys/class/thermal/thermal_zone0"
    tz.mkdir(parents=True, exist_ok=True)
    (tz / "type").write_text("soc\n")
    (tz / "temp").write_text("41000\n")
    (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    return root


def tvm_rpc_standin(dest: Path) -> Path:
    """`tvm_rpc server --host=H --port=P --port-end=E [--tracker=T --key=K]` -> python -m tvm.exec.rpc_server."""
    dest.write_text(f"""#!/bin/sh
shift
args=""
for a in "$@"; do
  case "$a" in
    --host=*) args="$args --host 127.0.0.1";;
    --port=*) args="$args --port ${{a#--port=}}";;
    --port-end=*) args="$args --port-end ${{a#--port-end=}}";;
    --tracker=*) args="$args --tracker ${{a#--tracker=}}";;
    --key=*) args="$args --key ${{a#--key=}}";;
  esac
done
exec {sys.executable} -m tvm.exec.rpc_server $args
""")
    dest.chmod(0o755)
    return dest
