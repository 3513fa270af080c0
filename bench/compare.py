"""`joulebench compare RUN_A RUN_B`: per cell common to two runs, B against A, in the manner of pyperf's compare_to.

Cells are matched on model, variant and target, and on device where both rows name one (cell ids differ across
runs); `--by model,variant` compares across targets or devices (e.g. a phone run with an FPGA run). Per pair: the
ratio of latencies (B/A, and the speedup A/B), a two-sided Mann-Whitney U test on the raw per-inference samples
(samples.parquet) at `alpha` for measured rows, and the energy ratio B/A where both rows have energy. Simulated and
modeled figures are deterministic: no test is run on them.

The command itself is bench/compare_cli.py (light to import); errors are StoreErrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import (
    as_float,
    as_text,
    energy_ratio,
    is_missing,
    ratio,
    read_manifest,
    read_measurements,
    read_samples,
    run_label,
)
from bench.store import StoreError

KEYS = ("model", "variant", "target", "device")
ALPHA = 0.05
MIN_SAMPLES = 2
DETERMINISTIC = "deterministic (simulated/modeled)"


@dataclass
class Run:
    path: Path
    label: str
    rows: pd.DataFrame
    samples: pd.DataFrame


def load_run(path: str | Path) -> Run:
    """A run directory's measurements and samples; anything missing or corrupt is one StoreError line."""
    manifest = read_manifest(path)
    return Run(Path(path), run_label(path, manifest), read_measurements(path), read_samples(path))


def parse_by(by: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in by.split(",") if k.strip())
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        raise StoreError(f"--by: expected a comma-separated subset of {', '.join(KEYS)}, got '{by}'")
    return keys


def match_cells(a: pd.DataFrame, b: pd.DataFrame, by: tuple[str, ...] = KEYS
                ) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """(pairs, only in A, only in B). `device` matches where both rows name one; every other key exactly."""
    exact = [k for k in by if k != "device"]
    ra, rb = a.to_dict("records"), b.to_dict("records")
    index: dict[tuple, list[dict]] = {}
    for r in rb:
        index.setdefault(tuple(as_text(r.get(k)) for k in exact), []).append(r)
    pairs = []
    for r in ra:
        for s in index.get(tuple(as_text(r.get(k)) for k in exact), []):
            da, db = as_text(r.get("device")), as_text(s.get("device"))
            if "device" not in by or not da or not db or da == db:
                pairs.append((r, s))
    paired_a = {id(p[0]) for p in pairs}
    paired_b = {id(p[1]) for p in pairs}
    return pairs, [r for r in ra if id(r) not in paired_a], [r for r in rb if id(r) not in paired_b]


def significance(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> dict:
    """Two-sided Mann-Whitney U on two samples (no normality assumed: latencies are skewed)."""
    from scipy.stats import mannwhitneyu

    if min(len(x), len(y)) < MIN_SAMPLES:
        return {"test": None, "p_value": None, "verdict": f"too few samples (< {MIN_SAMPLES})"}
    p = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    if math.isnan(p):  # every sample equal in both runs
        p = 1.0
    return {"test": "mann-whitney-u", "p_value": p, "verdict": "significant" if p < alpha else "not significant"}


def _cell_samples(samples: pd.DataFrame, cell_id) -> np.ndarray:
    return samples.loc[samples["cell_id"] == cell_id, "latency_ms"].to_numpy(dtype=np.float64)


def compare_pair(a: dict, b: dict, samples_a: pd.DataFrame, samples_b: pd.DataFrame, alpha: float = ALPHA) -> dict:
    """One matched cell: latencies, B/A and A/B, the test (measured only) and the energy ratio B/A."""
    kinds = {as_text(a.get("latency_kind")), as_text(b.get("latency_kind"))}
    out = {k: as_text(a.get(k)) for k in ("model", "variant")}
    out.update({f"{k}_{s}": as_text(r.get(k)) or None for k in ("target", "device", "status", "latency_kind")
                for s, r in (("a", a), ("b", b))})
    out.update(latency_ms_a=as_float(a.get("latency_ms")), latency_ms_b=as_float(b.get("latency_ms")))
    if a.get("status") != "ok" or b.get("status") != "ok" or None in (out["latency_ms_a"], out["latency_ms_b"]):
        out.update(ratio=None, speedup=None, test=None, p_value=None,
                   verdict=f"not comparable (status {out['status_a']} / {out['status_b']})")
    else:
        out.update(ratio=ratio(b["latency_ms"], a["latency_ms"]), speedup=ratio(a["latency_ms"], b["latency_ms"]))
        if kinds == {"measured"}:
            sa, sb = _cell_samples(samples_a, a["cell_id"]), _cell_samples(samples_b, b["cell_id"])
            out.update(significance(sa, sb, alpha), n_a=len(sa), n_b=len(sb))
        else:  # one figure each, no distribution: a test would be meaningless
            out.update(test=None, p_value=None, verdict=DETERMINISTIC)
    e, metric = energy_ratio(b, a)
    out.update(energy_metric=metric, energy_a=as_float(a.get(metric)) if metric else None,
               energy_b=as_float(b.get(metric)) if metric else None, energy_ratio=None if math.isnan(e) else e)
    return {k: None if is_missing(v) else v for k, v in out.items()}


def _geomean(values: list[float]) -> float | None:
    v = [x for x in values if x and x > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else None


def summarize(cells: list[dict]) -> dict:
    """Counts of verdicts and, per kind of figure (never pooled), the geometric mean of the speedup A/B."""
    sig = [c for c in cells if c["verdict"] == "significant"]
    kinds = sorted({c["latency_kind_a"] for c in cells if c["speedup"] and c["latency_kind_a"] == c["latency_kind_b"]})
    return {
        "matched": len(cells),
        "compared": sum(c["speedup"] is not None for c in cells),
        "significant": len(sig),
        "b_faster": sum(c["speedup"] > 1 for c in sig),
        "b_slower": sum(c["speedup"] < 1 for c in sig),
        "not_significant": sum(c["verdict"] == "not significant" for c in cells),
        "deterministic": sum(c["verdict"] == DETERMINISTIC for c in cells),
        "geomean_speedup": {k: _geomean([c["speedup"] for c in cells if c["latency_kind_a"] == k
                                         and c["latency_kind_b"] == k]) for k in kinds},
    }


def _brief(row: dict) -> dict:
    return {k: as_text(row.get(k)) or None for k in (*KEYS, "status", "latency_kind")}


def compare_runs(a: Run, b: Run, by: tuple[str, ...] = KEYS, alpha: float = ALPHA) -> dict:
    """The whole comparison as a JSON-ready document; no cell in common is a StoreError."""
    pairs, only_a, only_b = match_cells(a.rows, b.rows, by)
    if not pairs:
        raise StoreError(f"{a.path} and {b.path}: no cells in common (matched on {', '.join(by)}; "
                         "try --by model,variant to compare across targets and devices)")
    cells = [compare_pair(x, y, a.samples, b.samples, alpha) for x, y in pairs]
    return {"a": {"run": a.label, "path": str(a.path)}, "b": {"run": b.label, "path": str(b.path)},
            "by": list(by), "alpha": alpha, "cells": cells,
            "only_in_a": [_brief(r) for r in only_a], "only_in_b": [_brief(r) for r in only_b],
            "summary": summarize(cells)}


def _fmt(v, spec: str = ".4g") -> str:
    return "" if v is None else format(v, spec)


def change_text(cell: dict) -> str:
    """pyperf's wording: '1.52x slower' / '1.10x faster' (B against A)."""
    s = cell["speedup"]
    if s is None:
        return ""
    return f"{1 / s:.2f}x slower" if s < 1 else f"{s:.2f}x faster" if s > 1 else "same"


def render_table(doc: dict):
    """The comparison as a Rich table, with the unmatched cells and the summary as lines below it."""
    from rich.table import Table

    cross = {"target", "device"} - set(doc["by"])
    t = Table(title=f"B = {doc['b']['run']} against A = {doc['a']['run']}")
    for col in ("model", "variant", "target", "A ms", "B ms", "B/A", "change", "test", "energy B/A"):
        t.add_column(col, overflow="fold")
    for c in doc["cells"]:
        target = c["target_a"] if c["target_a"] == c["target_b"] else f"{c['target_a']} → {c['target_b']}"
        if "device" in cross and c["device_a"] != c["device_b"]:
            target += f" ({c['device_a']} → {c['device_b']})"
        test = c["verdict"] + (f" (p={c['p_value']:.2g})" if c["p_value"] is not None else "")
        t.add_row(c["model"], c["variant"], target, _fmt(c["latency_ms_a"]), _fmt(c["latency_ms_b"]),
                  _fmt(c["ratio"], ".3f"), change_text(c), test, _fmt(c["energy_ratio"], ".3f"))
    return t


def summary_lines(doc: dict) -> list[str]:
    s = doc["summary"]
    lines = [f"{s['matched']} cells matched on {', '.join(doc['by'])}: {s['significant']} significant at "
             f"alpha {doc['alpha']} ({s['b_faster']} faster, {s['b_slower']} slower in B), "
             f"{s['not_significant']} not significant, {s['deterministic']} deterministic (simulated/modeled)"]
    lines += [f"geometric mean speedup A/B ({kind} figures): {g:.3f}"
              for kind, g in s["geomean_speedup"].items() if g is not None]
    for side in ("a", "b"):
        for r in doc[f"only_in_{side}"]:
            lines.append(f"only in {side.upper()}: " + " / ".join(v for v in (r["model"], r["variant"], r["target"],
                                                                              r["device"]) if v))
    return lines
