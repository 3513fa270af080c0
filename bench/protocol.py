"""The measurement protocol: verify once, warm up, then timed runs (min count and duration) x repeats.

Backends hand over an `Executor`; this module owns the order of steps and the stopping rules so
every target is timed the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.power.meter import Meter
from bench.power.trace import EnergyResult, PowerTrace, Window, energy_per_inference
from bench.verify import check_output


class ProtocolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup_runs: int = Field(5, ge=0)
    warmup_s: float = Field(0.5, ge=0)
    min_runs: int = Field(20, ge=1)
    min_duration_s: float = Field(1.0, ge=0)
    repeats: int = Field(3, ge=1)
    max_runs_per_repeat: int = Field(100_000, ge=1)
    cooldown_s: float = Field(0.0, ge=0)
    idle_s: float = Field(2.0, gt=0, description="idle-power window before the timed window (meters only)")
    min_power_samples: int = Field(20, ge=2, description="meter samples wanted per timed repeat")
    temp_limit_c: float = Field(85.0, description="a temperature at or above this flags throttling")
    freq_drop: float = Field(0.10, ge=0, lt=1, description="a CPU/GPU clock falling by this fraction flags throttling")


class Executor(TypingProtocol):
    """A loaded artifact. `timer` names the clock behind `time_runs` (e.g. `tvm.time_evaluator`)."""

    timer: str

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def time_runs(self, n: int) -> list[float]:
        """Run `n` inferences on the last input given to `infer`; seconds per inference."""
        ...


@dataclass
class Measurement:
    status: str  # ok | failed
    verified: bool
    max_abs_err: float
    tolerance: float
    message: str = ""
    samples_s: list[list[float]] = field(default_factory=list)  # one list per repeat
    timer: str = ""
    windows: list[Window] = field(default_factory=list)  # timed repeats, harness monotonic clock
    idle: Window | None = None
    energy: list[EnergyResult] = field(default_factory=list)  # one per meter, the first is primary
    traces: list[PowerTrace] = field(default_factory=list)
    energy_note: str = ""  # why there is no energy figure, or a caveat on it
    device: dict = field(default_factory=dict)

    @property
    def provenance(self) -> str:
        parts = [f"measured:{self.timer}"] if self.timer else []
        return ", ".join(parts + [f"measured:{e.meter}" for e in self.energy[:1]])


def time_callable(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call wall time of `fn` on the monotonic perf counter, for backends without their own timer."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


def _mark(meters, label: str) -> None:
    for m in meters:
        m.mark(label)


def run_protocol(ex: Executor, x: np.ndarray, reference: np.ndarray, precision: str, spec: ProtocolSpec,
                 meters: Sequence[Meter] = ()) -> Measurement:
    """verify -> warm-up -> [meters on: idle window] -> timed repeats -> [meters off] -> cooldown."""
    check = check_output(np.asarray(ex.infer(x)), reference, precision)
    if not check.ok:
        # never time a wrong artifact: its speed means nothing
        return Measurement("failed", False, check.max_abs_err, check.tolerance, check.message)
    warm: list[float] = []
    t_end = time.monotonic() + spec.warmup_s
    while len(warm) < spec.warmup_runs or time.monotonic() < t_end:
        warm += ex.time_runs(1)
    est = float(np.median(warm)) if warm else ex.time_runs(1)[0]
    duration = spec.min_duration_s
    if meters:  # a slow meter gets a longer window rather than a noisy figure
        duration = max(duration, spec.min_power_samples * max(m.period_s for m in meters))
    n = max(spec.min_runs, math.ceil(duration / max(est, 1e-9)))
    n = min(n, spec.max_runs_per_repeat)
    extra = getattr(ex, "extra_runs_per_call", 0)
    idle = None
    for m in meters:
        m.start()
    try:
        if meters:
            # a device-side sampler's first reading lands a little after start(): let every meter settle
            time.sleep(3 * max(m.period_s for m in meters))
            _mark(meters, "idle_start")
            t0 = time.monotonic()
            time.sleep(spec.idle_s)
            idle = Window(t0, time.monotonic())
            _mark(meters, "idle_end")
        samples, windows = [], []
        _mark(meters, "timed_start")
        for _ in range(spec.repeats):
            # the estimate from warm-up can be off: add chunks until count and duration are both met
            t0, rep, inferences = time.monotonic(), [], 0
            while not rep or (time.monotonic() - t0 < duration and len(rep) < spec.max_runs_per_repeat):
                rep += ex.time_runs(n)
                inferences += n + extra
            samples.append(rep)
            windows.append(Window(t0, time.monotonic(), inferences))
        _mark(meters, "timed_end")
    finally:
        traces = [m.stop() for m in meters]
    m = Measurement("ok", True, check.max_abs_err, check.tolerance, "", samples, ex.timer, windows, idle,
                    traces=traces)
    for tr in traces:
        try:
            m.energy.append(energy_per_inference(tr, idle, windows))
        except ValueError as exc:  # keep the latency already measured; say why energy is missing
            m.energy_note = f"energy unavailable: {exc}"
            continue
        m.energy_note = "; ".join(tr.notes) if tr.notes else m.energy_note
    if spec.cooldown_s:
        time.sleep(spec.cooldown_s)
    return m


def throttled(before: dict, after: dict, spec: ProtocolSpec) -> bool:
    """A clock that fell by `freq_drop` or more, or a temperature at or above `temp_limit_c`."""
    for key in ("cpu_khz", "gpu_hz"):
        for core, f0 in (before.get(key) or {}).items():
            f1 = (after.get(key) or {}).get(core)
            if f0 and f1 is not None and f1 < (1 - spec.freq_drop) * f0:
                return True
    temps = list((before.get("temps_c") or {}).values()) + list((after.get("temps_c") or {}).values())
    return any(t >= spec.temp_limit_c for t in temps)
