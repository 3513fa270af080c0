"""The study's claims, each judged from the data: holds / does not hold / not measurable, with the numbers.

A pure function of the study frame (bench.reproduce.study.frame); nothing here is hard-coded but the claims
and their thresholds. Comparisons are per (model, pruning level): the best energy efficiency of a device class
at a set of precisions (best over its devices). Where a class has measured rows in a comparison, only those
count (measured figures replace modeled ones); otherwise simulated/modeled rows do, and the kinds used are
listed with every verdict. Energy is the idle-subtracted energy per inference (see study.py).
"""

from __future__ import annotations

import json
from statistics import median

import pandas as pd

from bench.reproduce.matrix import CLASSES
from bench.reproduce.study import KINDS, LEVEL_ORDER, frame, weakest

HOLDS, FAILS, NA = "holds", "does not hold", "not measurable"
GPU, FPGA = CLASSES["gpu"], CLASSES["fpga"]
HIGH_BITS = ("int16", "int8")  # "8/16 bit" on the FPGA
MID_BITS = ("int16", "int8", "int4")  # where "FPGA ahead only at binary/ternary" says the FPGA is not ahead
LOW_BITS = ("ternary", "binary")
FLOAT = ("fp32", "fp16")
ACCURACY_DROP_PP = 1.0  # "loses accuracy": more than this many percentage points below the float variant
CLAIMS = (
    "mobile GPU more energy-efficient than FPGA at 8/16 bit",
    "FPGA ahead only at binary/ternary",
    "binary/ternary lose accuracy",
    "block pruning helps both",
)


def _usable(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["energy_mj"].notna() & df["energy_kind_s"].notna()
              & df["device_class"].notna() & df["precision_name"].notna()]


def _prefer_measured(sub: pd.DataFrame) -> pd.DataFrame:
    m = sub[sub["energy_kind_s"] == "measured"]
    return m if not m.empty else sub


def _best(df: pd.DataFrame, cls: str, precisions) -> dict | None:
    """The most efficient row of a class at some precisions: inf/J, device, precision, kind."""
    sub = _prefer_measured(df[(df["device_class"] == cls) & df["precision_name"].isin(precisions)])
    if sub.empty:
        return None
    r = sub.loc[sub["inf_per_j_active"].idxmax()]
    b = {"inf_per_j": round(float(r["inf_per_j_active"]), 4), "device": r["device_label"],
         "precision": r["precision_name"], "kind": r["energy_kind_s"]}
    total, idle = r.get("inf_per_j"), r.get("idle_power_w")
    if pd.notna(total) and pd.notna(idle) and idle > 0:  # the device's idle/static power is known: say what it costs
        b["inf_per_j_with_idle"] = round(float(total), 4)
    return b


def _fmt(b: dict) -> str:
    idle = f"; {b['inf_per_j_with_idle']:.4g} with idle/static power" if "inf_per_j_with_idle" in b else ""
    return f"{b['inf_per_j']:.4g} inf/J ({b['device']}, {b['precision']}, {b['kind']}{idle})"


def _groups(df: pd.DataFrame):
    """(model, level) groups, levels in the study's order (dense first)."""
    groups = list(df.groupby(["model", "level"], sort=True))
    return sorted(groups, key=lambda kg: (kg[0][0], LEVEL_ORDER.index(kg[0][1]) if kg[0][1] in LEVEL_ORDER else 99))


def _kinds(items: list[dict]) -> str:
    ks = {b["kind"] for it in items for b in it.values() if isinstance(b, dict) and "kind" in b}
    return ", ".join(k for k in KINDS if k in ks)


def gpu_ahead_at_8_16(df: pd.DataFrame) -> dict:
    comps = []
    for (model, level), g in _groups(df):
        gpu, fpga = _best(g, GPU, FLOAT), _best(g, FPGA, HIGH_BITS)
        if gpu and fpga:
            comps.append({"model": model, "level": level, "gpu": gpu, "fpga": fpga,
                          "gpu_over_fpga": round(gpu["inf_per_j"] / fpga["inf_per_j"], 4)})
    if not comps:
        return _result(CLAIMS[0], NA, "needs mobile-GPU rows (fp32/fp16) and FPGA rows at int8/int16 with energy "
                                      "for the same model and pruning level", comps)
    wins = [c for c in comps if c["gpu_over_fpga"] > 1]
    text = "; ".join(f"{c['model']} {c['level']}: GPU {_fmt(c['gpu'])} vs FPGA {_fmt(c['fpga'])} = "
                     f"{c['gpu_over_fpga']:.3g}x" for c in comps)
    verdict = HOLDS if len(wins) == len(comps) else FAILS
    return _result(CLAIMS[0], verdict, f"GPU ahead in {len(wins)} of {len(comps)}: {text}", comps)


def fpga_ahead_only_low_bit(df: pd.DataFrame) -> dict:
    comps = []
    for (model, level), g in _groups(df):
        gpu = _best(g, GPU, FLOAT)
        per = {p: _best(g, FPGA, (p,)) for p in MID_BITS + LOW_BITS}
        per = {p: b for p, b in per.items() if b}
        if gpu and any(p in per for p in LOW_BITS) and any(p in per for p in MID_BITS):
            ahead = {p: b["inf_per_j"] > gpu["inf_per_j"] for p, b in per.items()}
            comps.append({"model": model, "level": level, "gpu": gpu, **{f"fpga_{p}": b for p, b in per.items()},
                          "fpga_ahead_at": [p for p in per if ahead[p]],
                          "holds": any(ahead.get(p) for p in LOW_BITS) and not any(ahead.get(p) for p in MID_BITS)})
    if not comps:
        return _result(CLAIMS[1], NA, "needs, for one model and pruning level, mobile-GPU rows and FPGA rows at "
                                      "binary or ternary and at 4/8/16 bit, with energy", comps)
    text = "; ".join(f"{c['model']} {c['level']}: GPU best {_fmt(c['gpu'])}, FPGA ahead at "
                     f"{', '.join(c['fpga_ahead_at']) or 'no precision'} ("
                     + ", ".join(f"{k[5:]} {v['inf_per_j']:.4g}" for k, v in c.items() if k.startswith("fpga_")
                                 and isinstance(v, dict)) + " inf/J)" for c in comps)
    return _result(CLAIMS[1], HOLDS if all(c["holds"] for c in comps) else FAILS, text, comps)


def low_bit_loses_accuracy(df: pd.DataFrame, drop_pp: float = ACCURACY_DROP_PP) -> dict:
    comps = []
    acc = df[df["accuracy"].notna() & df["precision_name"].notna()]
    for (model, level), g in _groups(acc):
        ref = g[g["precision_name"].isin(FLOAT)]
        if ref.empty:
            continue
        r = ref.loc[ref["accuracy"].idxmax()]
        for p in LOW_BITS:
            low = g[(g["precision_name"] == p) & (g["accuracy_dataset"].astype(str) == str(r["accuracy_dataset"]))]
            if low.empty:
                continue
            a = float(low["accuracy"].max())
            comps.append({"model": model, "level": level, "precision": p, "accuracy": round(a, 4),
                          "float": r["precision_name"], "float_accuracy": round(float(r["accuracy"]), 4),
                          "drop_pp": round(100 * (float(r["accuracy"]) - a), 2), "dataset": r["accuracy_dataset"]})
    if not comps:
        return _result(CLAIMS[2], NA, "needs held-out accuracy of binary or ternary variants and of a float variant "
                                      "(fp32/fp16) of the same model and pruning level", comps, basis="accuracy")
    lose = [c for c in comps if c["drop_pp"] > drop_pp]
    text = "; ".join(f"{c['model']} {c['level']} {c['precision']}: {c['accuracy']:.1%} vs {c['float']} "
                     f"{c['float_accuracy']:.1%} ({-c['drop_pp']:+.1f} pp, {c['dataset']})" for c in comps)
    return _result(CLAIMS[2], HOLDS if len(lose) == len(comps) else FAILS,
                   f"more than {drop_pp:g} pp lost in {len(lose)} of {len(comps)}: {text}", comps,
                   kinds="held-out evaluation", basis=f"held-out top-1; loses = more than {drop_pp:g} percentage points below the best float variant")


def pruning_helps_both(df: pd.DataFrame) -> dict:
    pairs = pruning_pairs(df)
    per_class = {}
    for cls in (GPU, FPGA):
        p = [x for x in pairs if x["device_class"] == cls]
        if p:
            per_class[cls] = {"pairs": len(p), "median_speedup": round(median(x["speedup"] for x in p), 4),
                              "median_energy_saving": round(median(x["energy_saving"] for x in p), 4),
                              "max_speedup": round(max(x["speedup"] for x in p), 4),
                              "max_energy_saving": round(max(x["energy_saving"] for x in p), 4),
                              "kinds": sorted({x["kind"] for x in p}, key=KINDS.index)}
    numbers = [{"class": c, **v} for c, v in per_class.items()]
    if len(per_class) < 2:
        missing = [c for c in (GPU, FPGA) if c not in per_class]
        return _result(CLAIMS[3], NA, f"no dense/pruned pair with latency and energy on: {', '.join(missing)}",
                       numbers, basis="speedup = dense / pruned latency; saving = dense / pruned energy per inference")
    ok = all(v["median_speedup"] > 1 and v["median_energy_saving"] > 1 for v in per_class.values())
    text = "; ".join(f"{c}: median speedup {v['median_speedup']:.3g}x (max {v['max_speedup']:.3g}x), median energy "
                     f"saving {v['median_energy_saving']:.3g}x (max {v['max_energy_saving']:.3g}x) over "
                     f"{v['pairs']} pairs ({', '.join(v['kinds'])})" for c, v in per_class.items())
    return _result(CLAIMS[3], HOLDS if ok else FAILS, text, numbers,
                   basis="per model, precision and device: dense / pruned latency and energy per inference; "
                         "holds when both classes' medians exceed 1", kinds=", ".join(
                       k for k in KINDS if any(k in v["kinds"] for v in per_class.values())))


def pruning_pairs(df: pd.DataFrame) -> list[dict]:
    """(model, precision, device) with a dense and a pruned row: speedup and energy saving, and the weaker kind."""
    ok = df[(df["status"] == "ok") & df["latency_ms"].notna() & df["energy_mj"].notna()
            & df["device_class"].notna() & df["precision_name"].notna()]
    out = []
    for (model, prec, dev), g in ok.groupby(["model", "precision_name", "device_label"], sort=True):
        dense = g[g["level"] == "dense"]
        if dense.empty:
            continue
        d = dense.iloc[0]
        for _, p in g[g["level"] != "dense"].iterrows():
            kind = weakest(d["latency_kind_s"], d["energy_kind_s"], p["latency_kind_s"], p["energy_kind_s"])
            if kind is None:
                continue
            out.append({"model": model, "precision": prec, "device": dev, "device_class": d["device_class"],
                        "level": p["level"], "speedup": float(d["latency_ms"] / p["latency_ms"]),
                        "energy_saving": float(d["energy_mj"] / p["energy_mj"]), "kind": kind,
                        "dense_cell_id": d.get("cell_id"), "pruned_cell_id": p.get("cell_id")})
    return out


def _result(claim: str, verdict: str, evidence: str, numbers: list, basis: str | None = None,
            kinds: str | None = None) -> dict:
    return {"claim": claim, "verdict": verdict, "evidence": evidence,
            "kinds": kinds if kinds is not None else _kinds(numbers) or "",
            "basis": basis or "energy efficiency = inferences per joule of idle-subtracted energy; best device of "
                              "each class per model and pruning level",
            "numbers": json.dumps(numbers, sort_keys=True, default=str)}


def findings(rows: pd.DataFrame, drop_pp: float = ACCURACY_DROP_PP) -> pd.DataFrame:
    """One row per claim: claim, verdict, evidence (the numbers in words), kinds, basis, numbers (JSON)."""
    df = rows if "energy_kind_s" in rows else frame(rows)
    usable = _usable(df)
    return pd.DataFrame([gpu_ahead_at_8_16(usable), fpga_ahead_only_low_bit(usable),
                         low_bit_loses_accuracy(df, drop_pp), pruning_helps_both(df)])
