"""Output check of a compiled artifact against the PyTorch (or ONNX reference) output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Allowed max |error| relative to the reference's largest magnitude, by the variant's precision.
RELATIVE_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int16": 2e-2, "int8": 6e-2, "int4": 6e-2, "int2": 6e-2, "int1": 6e-2}


@dataclass(frozen=True)
class Check:
    ok: bool
    max_abs_err: float
    tolerance: float
    message: str


def check_output(out: np.ndarray, ref: np.ndarray, precision: str) -> Check:
    if out.shape != ref.shape:
        return Check(False, float("inf"), 0.0, f"output shape {out.shape} differs from reference {ref.shape}")
    rel = RELATIVE_TOLERANCE.get(precision, RELATIVE_TOLERANCE["fp32"])
    tol = rel * max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
    if not np.isfinite(err) or err > tol:
        return Check(False, err, tol, f"output mismatch: max |err| {err:.3g} > tolerance {tol:.3g} ({precision})")
    return Check(True, err, tol, "")
