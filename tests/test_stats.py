from __future__ import annotations

import numpy as np
import pytest

from bench.stats import summarize
from bench.verify import check_output


def test_summary_matches_numpy_on_known_samples():
    rng = np.random.default_rng(0)
    s = rng.lognormal(mean=np.log(0.010), sigma=0.1, size=400)
    out = summarize(list(s))
    ms = s * 1e3
    assert out["latency_ms_p50"] == pytest.approx(np.median(ms))
    assert out["latency_ms_p99"] == pytest.approx(np.percentile(ms, 99))
    assert out["latency_cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert out["latency_ms_ci_low"] < out["latency_ms_p50"] < out["latency_ms_ci_high"]
    # the CI of a 400-sample median is narrow: well under the 10% spread of the samples
    assert (out["latency_ms_ci_high"] - out["latency_ms_ci_low"]) / out["latency_ms_p50"] < 0.05
    assert out["runs"] == 400


def test_check_output_tolerance_scales_with_precision():
    ref = np.linspace(-5, 5, 10, dtype=np.float32)
    assert check_output(ref + 1e-3, ref, "fp32").ok
    bad = check_output(ref + 0.1, ref, "fp32")
    assert not bad.ok and bad.max_abs_err == pytest.approx(0.1, rel=1e-3) and "mismatch" in bad.message
    assert check_output(ref + 0.05, ref, "fp16").ok
    assert not check_output(ref[:5], ref, "fp32").ok
    assert not check_output(ref * np.nan, ref, "fp32").ok
