"""Synthetic device trees and a counter writer: the hardware boundary for the power tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path


def rapl_tree(root: Path, max_range_uj: int, zones: int = 2) -> list[Path]:
    out = []
    for z in range(zones):
        d = root / "sys/class/powercap" / f"intel-rapl:{z}"
        d.mkdir(parents=True)
        (d / "name").write_text(f"package-{z}\n")
        (d / "energy_uj").write_text("0\n")
        (d / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        sub = root / "sys/class/powercap" / f"intel-rapl:{z}:0"  # a sub-zone must not be double counted
        sub.mkdir()
        (sub / "energy_uj").write_text("0\n")
        out.append(d)
    return out


class CounterWriter:
    """Advances each zone's energy_uj as `watts_per_zone` x elapsed time, wrapping at the zone's range,
    every millisecond: a RAPL counter on a schedule."""

    def __init__(self, zones: list[Path], watts_per_zone: float, max_range_uj: int) -> None:
        self.zones, self.watts, self.max = zones, watts_per_zone, max_range_uj
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            uj = int(self.watts * (time.monotonic() - self.t0) * 1e6) % self.max
            for z in self.zones:
                tmp = z / "energy_uj.tmp"
                tmp.write_text(f"{uj}\n")
                tmp.replace(z / "energy_uj")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
