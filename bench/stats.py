"""Summary statistics of latency samples: percentiles, CV and a bootstrap CI of the median."""

from __future__ import annotations

import numpy as np


def summarize(samples_s: list[float], *, seed: int = 0, resamples: int = 2000) -> dict[str, float]:
    """Latency summary in milliseconds; the 95% CI is a percentile bootstrap of the median."""
    x = np.asarray(samples_s, dtype=np.float64) * 1e3
    if x.size == 0:
        raise ValueError("no latency samples to summarize")
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(x, size=(resamples, x.size), replace=True), axis=1)
    return {
        "latency_ms_p50": float(np.median(x)),
        "latency_ms_p90": float(np.percentile(x, 90)),
        "latency_ms_p99": float(np.percentile(x, 99)),
        "latency_ms_mean": float(x.mean()),
        "latency_cv": float(x.std(ddof=1) / x.mean()) if x.size > 1 else 0.0,
        "latency_ms_ci_low": float(np.percentile(boot, 2.5)),
        "latency_ms_ci_high": float(np.percentile(boot, 97.5)),
        "runs": int(x.size),
    }
