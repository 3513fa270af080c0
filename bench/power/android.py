"""Android battery meter: current_now / voltage_now sampled *on the device* by a shell loop that writes
timestamped lines to a file, pulled when the window ends (an adb round trip per sample is far too slow).

Units and sign differ between devices: current in µA or mA, positive when charging or when
discharging. `unit` and `sign` make them explicit; `calibrate()` infers both from a short
sample taken on battery (see `joulebench calibrate-power`).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass

import numpy as np

from bench.api import LocalShell, Meter, MeterError, Shell
from bench.power.trace import PowerTrace

SAMPLER = (
    'P={supply}; while [ ! -e {stop} ]; do '
    'echo "$(date +%s%N) $(cat $P/current_now) $(cat $P/voltage_now) $(cat $P/status 2>/dev/null || echo Unknown)"; '
    'sleep {period}; done > {out} 2>/dev/null'
)


@dataclass(frozen=True)
class Sample:
    t_ns: int
    current: float
    voltage_uv: float
    status: str


def parse_sampler_output(text: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue  # a line cut by the stop
        try:
            out.append(Sample(int(parts[0]), float(parts[1]), float(parts[2]), parts[3] if len(parts) > 3 else "Unknown"))
        except ValueError:
            continue
    return out


def to_watts(samples: list[Sample], unit: str, sign: int) -> np.ndarray:
    """Discharge power in W: sign * I * V, with I in `unit` ('uA' or 'mA') and V in µV (the kernel's ABI)."""
    scale = {"uA": 1e-6, "mA": 1e-3}[unit]
    i = np.array([s.current for s in samples]) * scale
    v = np.array([s.voltage_uv for s in samples]) * 1e-6
    return sign * i * v


def calibrate(samples: list[Sample]) -> dict:
    """Infer unit and sign from samples taken on battery at rest: a phone draws 0.05-5 A, so
    |I| >= 10,000 means µA; discharging current must come out positive."""
    if not samples:
        raise MeterError("no samples to calibrate from")
    if any(s.status.lower() == "charging" for s in samples):
        raise MeterError("the device is charging: unplug USB power (or use adb over Wi-Fi) and calibrate again")
    cur = np.median([s.current for s in samples])
    unit = "uA" if abs(cur) >= 10_000 else "mA"
    return {"unit": unit, "sign": 1 if cur > 0 else -1}


class AndroidBatteryMeter(Meter):
    name = "android-battery"
    unit = "W"
    clock = "device"

    def __init__(self, shell: Shell | None = None, root: str = "/", supply: str = "battery", unit: str = "auto",
                 sign: int = 0, period_s: float = 0.05, workdir: str = "/data/local/tmp") -> None:
        self.shell = shell or LocalShell()
        self.supply = os.path.join(root, "sys/class/power_supply", supply)
        self.unit_opt, self.sign_opt = unit, sign
        self.period_s, self.workdir = period_s, workdir
        self.notes: list[str] = []

    def check(self) -> None:
        try:
            self.shell.run(f"cat {self.supply}/current_now {self.supply}/voltage_now")
        except Exception:
            raise MeterError(f"no readable {self.supply}/current_now and voltage_now here "
                             "(an Android device, reached over adb, or a device tree given as root)") from None

    def _sh(self, cmd: str) -> str:
        try:
            return self.shell.run(cmd)
        except Exception as exc:
            raise MeterError(f"android-battery: device command failed: {str(exc).splitlines()[0][:200]}") from None

    def _clock_offset(self) -> float:
        """device clock - host monotonic clock (s), from the midpoint of a round trip."""
        best = None
        for _ in range(3):
            t0 = time.monotonic()
            dev = int(self._sh("date +%s%N").strip()) * 1e-9
            t1 = time.monotonic()
            if best is None or (t1 - t0) < best[0]:
                best = (t1 - t0, dev - (t0 + t1) / 2)
        return best[1]

    def start(self) -> None:
        self.check()
        self._sh(f"test -d {self.workdir}")
        tag = uuid.uuid4().hex[:8]
        self._out, self._stopfile = f"{self.workdir}/jb-power-{tag}.txt", f"{self.workdir}/jb-power-{tag}.stop"
        self._offset = self._clock_offset()
        self.shell.spawn(SAMPLER.format(supply=self.supply, stop=self._stopfile, out=self._out, period=self.period_s))
        # the sampler is a background shell that a loaded device may start late: the idle window
        # must not open before its first reading is in
        if not self._wait_until(0.0):
            raise MeterError(f"android-battery: the device sampler wrote no reading within {self._wait_s:.0f} s "
                             f"of starting; is {self.supply} readable and the device responsive?")

    def _last_sample_s(self) -> float | None:
        """Host-clock time of the sampler's newest complete reading, or None before the first."""
        text = self._sh(f"tail -n 2 {self._out} 2>/dev/null || true")
        if not text.endswith("\n"):  # the loop is writing a line right now: drop the partial one
            text = text[: text.rfind("\n") + 1]
        done = parse_sampler_output(text)
        return done[-1].t_ns * 1e-9 - self._offset if done else None

    @property
    def _wait_s(self) -> float:
        return max(5.0, 50 * self.period_s)

    def _wait_until(self, t_host: float) -> bool:
        """Wait (bounded) for a reading taken at or after host time `t_host`; False if none came."""
        deadline = time.monotonic() + self._wait_s
        while (last := self._last_sample_s()) is None or last < t_host:
            if time.monotonic() > deadline:
                return False
            time.sleep(self.period_s / 2)
        return True

    def stop(self) -> PowerTrace:
        # the trace must reach the end of the timed window: wait for a reading taken after it
        # (under load the loop's sleep can leave a gap longer than the usual sample spacing). If none
        # comes, stop anyway: the energy then reports the window uncovered and the latency is kept
        self._wait_until(time.monotonic())
        self._sh(f"touch {self._stopfile}")
        time.sleep(self.period_s * 2 + 0.05)  # let the loop see the stop file and flush
        local = tempfile.mktemp(suffix=".txt")
        try:
            self.shell.pull(self._out, local)
            with open(local) as f:
                samples = parse_sampler_output(f.read())
        finally:
            self.shell.run(f"rm -f {self._out} {self._stopfile}")
            if os.path.exists(local):
                os.unlink(local)
        self.last_samples = samples
        if len(samples) < 2:
            raise MeterError(f"the device sampler produced {len(samples)} samples; is {self.supply} readable?")
        cal = calibrate(samples) if self.unit_opt == "auto" or self.sign_opt == 0 else {}
        unit = cal.get("unit", self.unit_opt) if self.unit_opt == "auto" else self.unit_opt
        sign = self.sign_opt or cal.get("sign", 1)
        t = np.array([s.t_ns for s in samples]) * 1e-9 - self._offset
        trace = PowerTrace(self.name, t, watts=to_watts(samples, unit, sign))
        trace.notes.append(f"unit={unit} sign={sign:+d} clock=device(offset {self._offset:.3f}s)")
        if any(s.status.lower() == "charging" for s in samples):
            trace.notes.append("WARNING: device charging over USB during the window: the battery current "
                               "excludes what the charger supplied, so energy is under-reported")
        return trace
