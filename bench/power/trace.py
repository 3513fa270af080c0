"""Energy per inference from a PowerTrace (the record and its integration methods are in bench.api).

E/inf is idle-subtracted: the integral of (P - P_idle) over each timed repeat, divided by its inferences."""

from __future__ import annotations

import numpy as np

from bench.api import EnergyResult, PowerTrace, Window

METHODS = ("counter", "sample-and-hold", "trapezoid")


def unwrap_counter(raw: np.ndarray, max_range: float) -> np.ndarray:
    """Cumulative counter readings that wrap to 0 after `max_range` -> a monotonic series.
    Assumes fewer than one wrap between consecutive readings (true for any sane polling period)."""
    raw = np.asarray(raw, dtype=np.float64)
    steps = np.diff(raw)
    steps = np.where(steps < 0, steps + max_range, steps)
    return np.concatenate([[raw[0]], raw[0] + np.cumsum(steps)]) if len(raw) else raw


def energy_per_inference(trace: PowerTrace, idle: Window, repeats: list[Window]) -> EnergyResult:
    """E/inf = integral of (P - P_idle) over each timed repeat / its inferences, averaged over repeats."""
    p_idle = trace.mean_power(idle.t0, idle.t1)
    dyn, tot, n_samples, energy = [], [], 0, 0.0
    for w in repeats:
        e = trace.energy(w.t0, w.t1)
        dyn.append((e - p_idle * w.seconds) / w.inferences * 1e3)
        tot.append(e / w.inferences * 1e3)
        n_samples += trace.samples_in(w.t0, w.t1)
        energy += e
    seconds = sum(w.seconds for w in repeats)
    ci = float("nan")
    if len(dyn) > 1:
        from scipy import stats

        ci = float(stats.t.ppf(0.975, len(dyn) - 1) * np.std(dyn, ddof=1) / np.sqrt(len(dyn)))
    total_inf = sum(w.inferences for w in repeats)
    return EnergyResult(trace.meter, trace.method, p_idle, energy / seconds, float(np.mean(dyn)), ci,
                        float(np.mean(tot)), total_inf / energy if energy > 0 else float("nan"), n_samples, dyn)
