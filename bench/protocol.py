"""The measurement protocol: verify once, warm up, then timed runs (min count and duration) x repeats.

Backends hand over an `Executor`; this module owns the order of steps and the stopping rules so
every target is timed the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
    started_at: float = 0.0  # time.monotonic() at the start of the timed window
    ended_at: float = 0.0
    device: dict = field(default_factory=dict)

    @property
    def provenance(self) -> str:
        return f"measured:{self.timer}" if self.timer else ""


def time_callable(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call wall time of `fn` on the monotonic perf counter, for backends without their own timer."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


def run_protocol(ex: Executor, x: np.ndarray, reference: np.ndarray, precision: str, spec: ProtocolSpec) -> Measurement:
    check = check_output(np.asarray(ex.infer(x)), reference, precision)
    if not check.ok:
        # never time a wrong artifact: its speed means nothing
        return Measurement("failed", False, check.max_abs_err, check.tolerance, check.message)
    warm: list[float] = []
    t_end = time.monotonic() + spec.warmup_s
    while len(warm) < spec.warmup_runs or time.monotonic() < t_end:
        warm += ex.time_runs(1)
    est = float(np.median(warm)) if warm else ex.time_runs(1)[0]
    n = max(spec.min_runs, math.ceil(spec.min_duration_s / max(est, 1e-9)))
    n = min(n, spec.max_runs_per_repeat)
    started = time.monotonic()
    samples = [ex.time_runs(n) for _ in range(spec.repeats)]
    ended = time.monotonic()
    if spec.cooldown_s:
        time.sleep(spec.cooldown_s)
    return Measurement("ok", True, check.max_abs_err, check.tolerance, "", samples, ex.timer, started, ended)
