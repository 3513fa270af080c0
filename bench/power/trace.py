"""Power traces and their integration over time windows, all on the harness's monotonic clock.

A trace is either instantaneous power samples (W) or a cumulative energy counter (J, already
unwrapped). Energy over [t0, t1]:
  counter          E(t1) - E(t0), the counter linearly interpolated between its samples
  sample-and-hold  each power sample holds until the next one (what a meter that reports its last
                   reading means); the window is cut exactly at t0 and t1
  trapezoid        power linearly interpolated between samples (for meters that sample a smooth
                   signal); same cut
Sample-and-hold is the default for power meters: it never invents power between readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("counter", "sample-and-hold", "trapezoid")


@dataclass
class PowerTrace:
    meter: str
    t: np.ndarray  # seconds, harness monotonic clock, increasing
    watts: np.ndarray | None = None
    joules: np.ndarray | None = None  # cumulative, unwrapped
    method: str = "sample-and-hold"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        if (self.watts is None) == (self.joules is None):
            raise ValueError("a trace holds either power samples or an energy counter")
        if self.joules is not None:
            self.joules = np.asarray(self.joules, dtype=np.float64)
            self.method = "counter"
        else:
            self.watts = np.asarray(self.watts, dtype=np.float64)
        if len(self.t) and np.any(np.diff(self.t) < 0):
            raise ValueError(f"{self.meter}: trace timestamps are not monotonic")

    def samples_in(self, t0: float, t1: float) -> int:
        return int(np.count_nonzero((self.t >= t0) & (self.t <= t1)))

    def energy(self, t0: float, t1: float) -> float:
        """Joules consumed in [t0, t1]. Raises if the trace does not cover the window."""
        if len(self.t) < 2 or t0 < self.t[0] or t1 > self.t[-1] + self._hold():
            raise ValueError(f"{self.meter}: trace [{self.t[0] if len(self.t) else 'empty'}, "
                             f"{self.t[-1] if len(self.t) else ''}] does not cover window [{t0:.3f}, {t1:.3f}]")
        if self.joules is not None:
            return float(np.interp(t1, self.t, self.joules) - np.interp(t0, self.t, self.joules))
        if self.method == "trapezoid":
            inner = (self.t > t0) & (self.t < t1)
            ts = np.concatenate([[t0], self.t[inner], [t1]])
            ps = np.interp(ts, self.t, self.watts)
            return float(np.sum((ps[1:] + ps[:-1]) / 2 * np.diff(ts)))
        # sample-and-hold: the value of the latest sample at or before each instant
        edges = np.concatenate([[t0], self.t[(self.t > t0) & (self.t < t1)], [t1]])
        idx = np.searchsorted(self.t, edges[:-1], side="right") - 1
        return float(np.sum(self.watts[np.clip(idx, 0, None)] * np.diff(edges)))

    def mean_power(self, t0: float, t1: float) -> float:
        return self.energy(t0, t1) / (t1 - t0)

    def _hold(self) -> float:
        # a held sample stays valid for one sampling interval past the last timestamp
        return float(np.median(np.diff(self.t))) if self.watts is not None and len(self.t) > 1 else 0.0


def unwrap_counter(raw: np.ndarray, max_range: float) -> np.ndarray:
    """Cumulative counter readings that wrap to 0 after `max_range` -> a monotonic series.
    Assumes fewer than one wrap between consecutive readings (true for any sane polling period)."""
    raw = np.asarray(raw, dtype=np.float64)
    steps = np.diff(raw)
    steps = np.where(steps < 0, steps + max_range, steps)
    return np.concatenate([[raw[0]], raw[0] + np.cumsum(steps)]) if len(raw) else raw


@dataclass(frozen=True)
class Window:
    t0: float
    t1: float
    inferences: int = 0

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


@dataclass
class EnergyResult:
    meter: str
    method: str
    idle_power_w: float
    avg_power_w: float
    energy_mj_per_inf: float  # idle-subtracted (dynamic) energy per inference
    energy_mj_per_inf_ci: float  # half-width of the 95% CI over repeats (nan with one repeat)
    energy_total_mj_per_inf: float  # including idle power
    inf_per_j: float  # on total energy: what a battery sees
    power_samples: int
    per_repeat_mj: list[float]

    def gops_per_w(self, macs_per_inf: int) -> float:
        return 2 * macs_per_inf * 1e-9 * self.inf_per_j


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
