"""sysfs meters: Linux powercap (RAPL, Intel and AMD) and hwmon (INA2xx/INA3221 rails on Jetson, Kria
KV260's INA260, ZCU10x). Every path is under `root` (default '/'), so a mounted or synthetic tree works.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from bench.api import MeterError, PolledMeter
from bench.power.trace import PowerTrace, unwrap_counter


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise MeterError(f"cannot read {path}: {exc}") from None


class RaplMeter(PolledMeter):
    """Package energy counters under /sys/class/powercap/intel-rapl:N (µJ, wrapping at max_energy_range_uj)."""

    name = "rapl"
    unit = "J"

    def __init__(self, root: str = "/", domains: list[str] | None = None, period_s: float = 0.02) -> None:
        super().__init__(period_s)
        self.root = Path(root)
        self.domains = domains

    def zones(self) -> list[Path]:
        found = sorted(Path(p) for p in glob.glob(str(self.root / "sys/class/powercap/intel-rapl:[0-9]*"))
                       if ":" in Path(p).name and Path(p).name.count(":") == 1)
        if self.domains:
            found = [z for z in found if (z / "name").exists() and (z / "name").read_text().strip() in self.domains]
        return found

    def check(self) -> None:
        zones = self.zones()
        if not zones:
            raise MeterError(f"no RAPL zones under {self.root / 'sys/class/powercap'} "
                             "(not exposed on this machine, e.g. in most VMs)")
        for z in zones:
            _read_int(z / "energy_uj")

    def read(self) -> list[int]:
        # one raw counter per zone: each wraps on its own range
        return [_read_int(z / "energy_uj") for z in self._zones]

    def start(self) -> None:
        self._zones = self.zones()
        self._ranges = [_read_int(z / "max_energy_range_uj") for z in self._zones]
        super().start()

    def to_trace(self, t: np.ndarray, v: np.ndarray) -> PowerTrace:
        v = np.asarray(v, dtype=np.float64).reshape(len(t), -1)
        total = sum(unwrap_counter(v[:, i], self._ranges[i]) for i in range(v.shape[1]))
        return PowerTrace(self.name, t, joules=(total - total[0]) * 1e-6)


class HwmonMeter(PolledMeter):
    """Power of one hwmon device (by `name`), from power*_input (µW) or in*_input (mV) x curr*_input (mA);
    `label` picks a channel by its *_label file (INA3221 rails), else the first channel."""

    name = "hwmon"
    unit = "W"

    def __init__(self, root: str = "/", device: str | None = None, label: str | None = None,
                 period_s: float = 0.02) -> None:
        super().__init__(period_s)
        self.root, self.device, self.label = Path(root), device, label

    def _device_dir(self) -> Path:
        devs = sorted(Path(p) for p in glob.glob(str(self.root / "sys/class/hwmon/hwmon*")))
        if not devs:
            raise MeterError(f"no hwmon devices under {self.root / 'sys/class/hwmon'}")
        if self.device is None:
            return devs[0]
        for d in devs:
            if (d / "name").exists() and (d / "name").read_text().strip() == self.device:
                return d
        names = [(d / "name").read_text().strip() for d in devs if (d / "name").exists()]
        raise MeterError(f"no hwmon device named '{self.device}' (found: {', '.join(names) or 'none'})")

    def _channel(self, d: Path) -> tuple[str, str]:
        """('power', N) or ('vi', N) for the channel to read."""
        if self.label is not None:  # e.g. INA3221: in1_label = VDD_IN, with in1_input / curr1_input
            for f in sorted(d.glob("*_label")):
                if f.read_text().strip() == self.label:
                    prefix = f.name.removesuffix("_label")
                    kind = prefix.rstrip("0123456789")
                    return ("power" if kind == "power" else "vi"), prefix[len(kind):]
            raise MeterError(f"{d}: no channel labelled '{self.label}'")
        powers = sorted(d.glob("power[0-9]*_input"))
        if powers:
            return "power", powers[0].name[len("power"):-len("_input")]
        if sorted(d.glob("in[0-9]*_input")) and sorted(d.glob("curr[0-9]*_input")):
            return "vi", sorted(d.glob("curr[0-9]*_input"))[0].name[len("curr"):-len("_input")]
        raise MeterError(f"{d}: no power*_input nor in*_input + curr*_input files")

    def check(self) -> None:
        d = self._device_dir()
        self._dir, self._chan = d, self._channel(d)
        self.read()

    def read(self) -> float:
        kind, n = self._chan
        if kind == "power":
            return _read_int(self._dir / f"power{n}_input") * 1e-6
        return _read_int(self._dir / f"in{n}_input") * 1e-3 * _read_int(self._dir / f"curr{n}_input") * 1e-3
