"""Reports of a run directory: one summary table as Markdown, CSV or a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from bench.store import RunStore

SUMMARY = {
    "model": "model", "variant": "variant", "target": "target", "status": "status", "verified": "verified",
    "latency_ms": "latency ms", "latency_kind": "latency kind", "latency_ms_p90": "p90 ms",
    "latency_ms_p99": "p99 ms", "latency_cv": "CV", "ci": "p50 95% CI", "runs": "runs",
    "macs_effective": "MACs (M)", "params_kept": "params (M)", "accuracy": "top-1", "avg_power_w": "avg W",
    "energy_mj_per_inf": "mJ/inf", "energy_ci": "mJ/inf 95% CI ±", "inf_per_j": "inf/J", "gops_per_w": "GOPS/W",
    "energy_kind": "energy kind", "provenance": "provenance", "message": "note",
}


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    t = df.copy()
    t["ci"] = [f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) else "" for lo, hi in
               zip(t["latency_ms_ci_low"], t["latency_ms_ci_high"], strict=True)]
    t["macs_effective"] = t["macs_effective"].astype("float64") / 1e6
    t["params_kept"] = t["params_kept"].astype("float64") / 1e6
    t["energy_ci"] = t["energy_mj_per_inf_ci"]
    note = t["message"].fillna("").astype(str)
    energy = t["energy_note"].fillna("").astype(str) if "energy_note" in t else ""
    latency = t["latency_note"].fillna("").astype(str) if "latency_note" in t else ""
    t["message"] = [(m or e or lat)[:160] for m, e, lat in zip(note, energy, latency, strict=True)]
    t = t[list(SUMMARY)].rename(columns=SUMMARY)
    return t.sort_values(["model", "variant", "target"], kind="stable").reset_index(drop=True)


def energy_gaps(df: pd.DataFrame) -> list[str]:
    """One line per target without energy figures, saying why (never a made-up number)."""
    if "energy_note" not in df:
        return []
    gaps = df[df["energy_mj_per_inf"].isna() & df["energy_note"].fillna("").str.startswith("energy unavailable")]
    return [f"{t}: {n}" for t, n in gaps.groupby("target")["energy_note"].first().items()]


def _origins(manifest: dict) -> list[str]:
    """A run resumed on another commit or host (with --force) says so."""
    origins = manifest.get("origins") or []
    if len(origins) < 2:
        return []
    return ["mixed run: cells come from " + "; ".join(f"commit {o['git_commit']} at host {o['host']}"
                                                      for o in origins) + " (see the git_commit and host columns)"]


def cell_text(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def to_markdown(t: pd.DataFrame) -> str:
    head = "| " + " | ".join(t.columns) + " |"
    sep = "|" + "|".join("---" for _ in t.columns) + "|"
    rows = ["| " + " | ".join(cell_text(v).replace("|", "\\|") for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def render(run_dir: str | Path, fmt: str = "md") -> str:
    store = RunStore(run_dir)
    manifest, df = store.manifest(), store.measurements()
    t = summary_table(df)
    if fmt == "csv":
        return df.to_csv(index=False)
    title = f"joulebench — {manifest['campaign']} / {manifest['run_id']}"
    notes = [
        f"host: {manifest['host']['cpu']} ({manifest['host']['cores']} cores), "
        f"commit {manifest.get('git_commit') or 'unknown'}",
        "latency ms: the median (p50) of per-inference samples over all repeats for measured rows (CI: bootstrap "
        "of the median); the single deterministic figure for simulated or modeled rows, which have no "
        "distribution. Kinds of figure are never averaged together.",
        "energy: mJ/inf = integral of (P - P_idle) over each timed repeat / its inferences, mean over repeats "
        "(CI: t-interval over repeats); inf/J and GOPS/W on total energy; the meter is in the provenance.",
        *energy_gaps(df),
        *_origins(manifest),
    ]
    if fmt == "md":
        return "\n\n".join([f"# {title}", *[f"- {n}" for n in notes], to_markdown(t)]) + "\n"
    if fmt == "html":
        return _html(title, notes, t, Path(run_dir), manifest)
    raise ValueError(f"unknown report format '{fmt}' (expected md, csv or html)")


def _html(title: str, notes: list[str], t: pd.DataFrame, run_dir: Path, manifest: dict) -> str:
    imgs = []
    for png in sorted((run_dir / "plots").glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        imgs.append(f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    table = t.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0, classes="t")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
             ".t{border-collapse:collapse;font-size:13px}.t td,.t th{padding:4px 8px;border-bottom:1px solid #ddd}"
             "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + table + "".join(imgs)
            + f"<details><summary>manifest</summary><pre>{html.escape(json.dumps(manifest, indent=2))}</pre>"
            "</details></body></html>")


def write_reports(run_dir: str | Path) -> list[Path]:
    out = []
    for fmt, name in (("md", "report.md"), ("csv", "report.csv"), ("html", "report.html")):
        p = Path(run_dir) / name
        p.write_text(render(run_dir, fmt))
        out.append(p)
    return out
