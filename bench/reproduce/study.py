"""The rows of a study's runs -> one study frame with the columns the figures and findings read.

Energy basis: every comparison uses the idle-subtracted energy per inference (`energy_mj_per_inf`), the only
figure every row has on the same footing: the modeled mobile GPUs have no published idle power (their total
energy is the active one), measured rows subtract the idle window, and the FPGA rows subtract the board's
static power. `inf_per_j` / `gops_per_w` here are computed on that basis (the rows' own columns use the total).

Kinds: a figure's kind is read from its provenance label (`measured:` / `simulated:` / `modeled:`), falling back
to the kind column, and where the two disagree the weaker one wins: nothing is ever shown as more measured
than its provenance says.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.reproduce.matrix import CLASSES, PRUNING

KINDS = ("measured", "simulated", "modeled")  # strongest first
PRECISION_ORDER = ("fp32", "fp16", "int16", "int8", "int4", "ternary", "binary")
LEVEL_ORDER = tuple(PRUNING)
GPU_TARGETS = ("android-gpu-model", "android-gpu")
FPGA_TARGETS = ("fpga-sim", "fpga-pynq")


def weakest(*kinds) -> str | None:
    """The least direct of some kinds (modeled < simulated < measured); None if any is missing."""
    ks = [k for k in kinds]
    if not ks or any(k not in KINDS for k in ks):
        return None
    return max(ks, key=KINDS.index)


def _kind(provenance, kind) -> str | None:
    """The kind a provenance label (`kind:source`, bench.api.check_provenance) gives, weakened by the kind column;
    an unreadable label gives none."""
    k = kind if isinstance(kind, str) and kind in KINDS else None
    if isinstance(provenance, str) and provenance:
        p, colon, source = provenance.partition(":")
        if p not in KINDS or not colon or not source:
            return None
        return weakest(p, k) if k else p
    return k


def precision_of(bits, precision) -> str | None:
    bits = None if bits is None or pd.isna(bits) else int(bits)
    if precision == "fp16":
        return "fp16"
    return {32: "fp32", 16: "int16", 8: "int8", 4: "int4", 2: "ternary", 1: "binary"}.get(bits)


def level_of(scheme, sparsity) -> str | None:
    s = 0.0 if scheme in (None, "none") or sparsity is None or pd.isna(sparsity) else float(sparsity)
    if s == 0:
        return "dense"
    for name, v in PRUNING.items():
        if math.isclose(v, s):
            return name
    return f"{1 / (1 - s):.3g}x"


def device_class(target) -> str | None:
    return CLASSES["gpu"] if target in GPU_TARGETS else CLASSES["fpga"] if target in FPGA_TARGETS else None


def device_label(r: dict) -> str:
    t, dev = r.get("target"), str(r.get("device") or "")
    if t == "android-gpu-model":  # "modeled Adreno 650 (Snapdragon 865 / 865+)"
        return dev.removeprefix("modeled ").split(" (")[0]
    if t == "fpga-sim":
        return f"{r.get('board') or dev.removeprefix('fpga-sim:')} {r.get('array') or ''}".strip()
    return f"{t} {dev}".strip()


def frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Study columns added to the rows (kept as they are): precision_name, level, device_class, device_label,
    energy_kind_s / latency_kind_s (kinds as the provenance says), energy_mj, inf_per_j_active, gops_per_w_active."""
    df = rows.copy().reset_index(drop=True)
    recs = df.to_dict("records")
    get = lambda r, k: r.get(k) if k in r else None  # noqa: E731  (synthetic frames may lack columns)
    df["precision_name"] = [precision_of(get(r, "bits"), get(r, "precision")) for r in recs]
    df["level"] = [level_of(get(r, "scheme"), get(r, "sparsity")) for r in recs]
    df["device_class"] = [device_class(get(r, "target")) for r in recs]
    df["device_label"] = [device_label(r) for r in recs]
    df["latency_kind_s"] = [_kind(get(r, "latency_provenance"), get(r, "latency_kind")) for r in recs]
    df["energy_kind_s"] = [_kind(get(r, "energy_provenance"), get(r, "energy_kind")) for r in recs]
    e = pd.to_numeric(df["energy_mj_per_inf"], errors="coerce").astype("float64")
    ok = (df["status"] == "ok") & (e > 0)
    df["energy_mj"] = e.where(ok)
    df["inf_per_j_active"] = 1e3 / df["energy_mj"]
    macs = pd.to_numeric(df["macs_effective"], errors="coerce").astype("float64")
    df["gops_per_w_active"] = 2 * macs * 1e-9 / (df["energy_mj"] * 1e-3)
    df["latency_ms"] = pd.to_numeric(df["latency_ms"], errors="coerce").astype("float64").where(df["status"] == "ok")
    return df


def read_runs(run_dirs: list) -> pd.DataFrame:
    """The rows of several run directories, each tagged with its run directory."""
    from bench.store import RunStore

    frames = []
    for d in run_dirs:
        rows = RunStore(d).measurements()
        rows["run"] = str(d)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
