"""Reports of one run directory, or of several combined: a summary table as Markdown, CSV, JSON or a
self-contained HTML page, with every row's ratios against its baseline.

Baselines (`baseline_ratios`):
- the dense variant of the same model on the same target and device, in the same run: the dense variant at the
  row's bits and precision for a pruned row (the study compares block-pruned with dense at one precision), else
  the fp32 dense; a quantized or fp16 dense row is compared with the fp32 dense; the fp32 dense row has none.
  `speedup` = baseline latency / row latency, `energy saving` = baseline energy / row energy, and for pruned rows
  `MAC realization` = speedup / (dense MACs / executed MACs) (1: the whole MAC reduction became speed).
  A ratio is only taken between figures of one kind (measured / simulated / modeled).
- the campaign's `baseline_target = "name"` (top level of the campaign TOML, or in its [campaign] table): the same
  model and variant on that target, whatever the kinds (the kind columns say which figures the ratio divides).
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.rows import with_all_columns
from bench.store import RunStore, StoreError

# internal column -> header; order is the table's order
SUMMARY = {
    "run": "run", "model": "model", "variant": "variant", "target": "target", "device": "device",
    "scheme": "scheme", "sparsity": "sparsity", "bits": "bits", "executed": "executed", "status": "status",
    "verified": "verified", "latency_ms": "latency ms", "latency_kind": "latency kind",
    "latency_ms_p90": "p90 ms", "latency_ms_p99": "p99 ms", "latency_cv": "CV", "ci": "p50 95% CI",
    "runs": "runs", "macs_effective": "MACs (M)", "params_kept": "params (M)", "accuracy": "top-1",
    "avg_power_w": "avg W", "energy_mj_per_inf": "mJ/inf", "energy_ci": "mJ/inf 95% CI ±", "inf_per_j": "inf/J",
    "gops_per_w": "GOPS/W", "gops_per_w_dense": "GOPS/W dense-eq", "energy_kind": "energy kind",
    "baseline": "baseline", "speedup": "speedup", "energy_saving": "energy saving",
    "mac_realization": "MAC realization", "target_speedup": "speedup vs base target",
    "target_energy_saving": "energy saving vs base target", "provenance": "provenance", "note": "note",
}
RATIOS = ("baseline", "speedup", "energy_saving", "mac_realization", "baseline_target", "target_speedup",
          "target_energy_saving")
# stated once above the table when every row has the same value (else a column)
ONCE = ("run", "device", "note")
# energy per inference, in order of preference for a ratio: idle-subtracted, else total
ENERGY = ("energy_mj_per_inf", "energy_total_mj_per_inf")
FORMATS = ("md", "csv", "html", "json")


# ---- reading runs ----------------------------------------------------------------------------------------------

# RunStore turns a missing or corrupt manifest / Parquet file into one StoreError line, and fills schema
# columns an older file lacks (bench.rows.read); these name the three reads every report and comparison does.

def read_manifest(run_dir: str | Path) -> dict:
    root = Path(run_dir)
    if not root.is_dir():
        raise StoreError(f"{root}: not a run directory (no such directory)")
    return RunStore(root).manifest()


def read_measurements(run_dir: str | Path) -> pd.DataFrame:
    return RunStore(run_dir).measurements()


def read_samples(run_dir: str | Path) -> pd.DataFrame:
    return RunStore(run_dir).samples()


def run_label(run_dir: str | Path, manifest: dict) -> str:
    return f"{manifest.get('campaign') or '?'}/{manifest.get('run_id') or Path(run_dir).name}"


def run_labels(run_dirs: Sequence[str | Path], manifests: Sequence[dict]) -> list[str]:
    """campaign/run_id of each run; the path where that label repeats."""
    labels: list[str] = []
    for d, m in zip(run_dirs, manifests, strict=True):
        label = run_label(d, m)
        labels.append(str(d) if label in labels else label)
    return labels


def combine_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Several runs' measurements in one frame, with a `run` column (`labels`, default `run_labels`), so runs
    from different days or devices can be reported or compared together."""
    if not run_dirs:
        raise StoreError("no run directory given")
    labels = labels or run_labels(run_dirs, [read_manifest(d) for d in run_dirs])
    return pd.concat([read_measurements(d).assign(run=label) for d, label in zip(run_dirs, labels, strict=True)],
                     ignore_index=True)


def baseline_target(manifest: dict) -> str | None:
    """The campaign's `baseline_target`, read from the TOML text the manifest keeps; absent or unreadable: None."""
    text = manifest.get("campaign_toml")
    if not text:
        return None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    value = doc.get("baseline_target") or (doc.get("campaign") or {}).get("baseline_target")
    return str(value) if value else None


def completeness(run_dir: str | Path, manifest: dict) -> str | None:
    """'incomplete run: N of M cells finished' when the run was cut short, else None."""
    planned = manifest.get("cells")
    done = sum((Path(run_dir) / "cells" / f"{c}.json").exists() for c in planned) if planned else None
    if planned and done < len(planned):
        return f"incomplete run: {done} of {len(planned)} cells finished"
    if "finished_at" not in manifest:
        return "incomplete run: it never finished" + (f" ({done} of {len(planned)} cells finished)" if planned else "")
    return None


# ---- values ----------------------------------------------------------------------------------------------------

def is_missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def as_float(v) -> float | None:
    return None if is_missing(v) else float(v)


def as_text(v) -> str:
    return "" if is_missing(v) else str(v)


def ratio(num, den) -> float:
    """num / den of two figures; NaN when either is missing or the denominator is not positive."""
    a, b = as_float(num), as_float(den)
    return a / b if a is not None and b is not None and b > 0 else math.nan


def energy_ratio(num: Mapping, den: Mapping) -> tuple[float, str | None]:
    """num's energy per inference / den's, on the first metric both rows have (idle-subtracted, else total)."""
    for col in ENERGY:
        if as_float(num.get(col)) is not None and as_float(den.get(col)) is not None:
            return ratio(num[col], den[col]), col
    return math.nan, None


def is_dense(row: Mapping) -> bool:
    return as_text(row.get("scheme")) == "none" or as_text(row.get("variant")) == "dense"


def is_pruned(row: Mapping) -> bool:
    return as_text(row.get("scheme")) not in ("", "none") and (as_float(row.get("sparsity")) or 0) > 0


# ---- baselines ------------------------------------------------------------------------------------------------

def _usable(row: Mapping) -> bool:
    return row.get("status") == "ok" and as_float(row.get("latency_ms")) is not None


def _dense_baseline(row: Mapping, dense: list[dict]) -> dict | None:
    """Same bits and precision, else same bits (pruned rows); then the fp32 dense (never the row itself)."""
    if not is_dense(row):
        same = [d for d in dense if as_float(d.get("bits")) == as_float(row.get("bits"))]
        pick = [d for d in same if as_text(d.get("precision")) == as_text(row.get("precision"))] or same
        if pick:
            return pick[0]
    fp32 = [d for d in dense if d is not row and as_float(d.get("bits")) in (32, None)
            and as_text(d.get("precision")) in ("fp32", "")]
    return fp32[0] if fp32 else None


def _same_kind(a: Mapping, b: Mapping, col: str) -> bool:
    return as_text(a.get(col)) == as_text(b.get(col))


def _against(row: dict, base: dict | None, kinds: bool) -> tuple[float, float]:
    """(speedup, energy saving) of `row` over `base`; with `kinds`, only between figures of one kind."""
    if base is None or not _usable(row):
        return math.nan, math.nan
    speedup = ratio(base["latency_ms"], row["latency_ms"]) if not kinds or _same_kind(row, base, "latency_kind") \
        else math.nan
    saving = energy_ratio(base, row)[0] if not kinds or _same_kind(row, base, "energy_kind") else math.nan
    return speedup, saving


def _key(row: Mapping, *cols: str) -> tuple[str, ...]:
    return tuple(as_text(row.get(c)) for c in cols)


def baseline_ratios(df: pd.DataFrame, base_targets: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """`df` with the columns of RATIOS (see the module docstring); `base_targets`: run label -> baseline target
    (key "" for a single run without a `run` column)."""
    rows = df.to_dict("records")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if _usable(r) and is_dense(r):
            groups.setdefault(_key(r, "run", "model", "target", "device"), []).append(r)
    by_variant = {_key(r, "run", "model", "variant", "target"): r for r in rows if _usable(r)}
    out = []
    for r in rows:
        run = as_text(r.get("run"))
        base = _dense_baseline(r, groups.get(_key(r, "run", "model", "target", "device"), [])) if _usable(r) else None
        speedup, saving = _against(r, base, kinds=True)
        realized = math.nan
        if is_pruned(r) and not math.isnan(speedup):
            realized = speedup / ratio(r.get("macs_dense"), r.get("macs_effective"))
        tgt = (base_targets or {}).get(run)
        on_other = tgt and tgt != as_text(r.get("target"))
        ref = by_variant.get((run, as_text(r.get("model")), as_text(r.get("variant")), tgt)) if on_other else None
        t_speedup, t_saving = _against(r, ref, kinds=False)
        out.append({"baseline": base["variant"] if base is not None and base is not r else None,
                    "speedup": speedup, "energy_saving": saving, "mac_realization": realized,
                    "baseline_target": tgt, "target_speedup": t_speedup, "target_energy_saving": t_saving})
    return pd.concat([df.reset_index(drop=True), pd.DataFrame(out, columns=list(RATIOS))], axis=1)


# ---- the summary ----------------------------------------------------------------------------------------------

def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Model, then dense first, then increasing compression (sparsity, then decreasing bits), then target."""
    key = pd.DataFrame({
        "model": df["model"].fillna(""),
        "compressed": [0 if is_dense(r) else 1 for r in df.to_dict("records")],
        "sparsity": df["sparsity"].fillna(0.0),
        "bits": -df["bits"].astype("float64").fillna(32.0),
        "variant": df["variant"].fillna(""),
        "target": df["target"].fillna(""),
        "run": df["run"].fillna("") if "run" in df else "",
    }, index=df.index)
    order = key.sort_values(list(key.columns), kind="stable").index
    return df.loc[order].reset_index(drop=True)


def annotate(df: pd.DataFrame, base_targets: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """Every row with its display status, note and baseline ratios, sorted; figures stay numbers."""
    t = with_all_columns(df).copy()
    compiled = t["status"] == "compiled"
    t["status"] = t["status"].mask(compiled, "not run")  # built, no device to run it on: nothing was checked
    t["verified"] = t["verified"].astype("boolean").mask(compiled.fillna(False).astype(bool), pd.NA)
    t["note"] = [(as_text(m) or (as_text(e) if not _is_gap(e) else "") or as_text(lat))[:160]
                 for m, e, lat in zip(t["message"], t["energy_note"], t["latency_note"], strict=True)]
    return sort_rows(baseline_ratios(t, base_targets))


def _display(t: pd.DataFrame) -> pd.DataFrame:
    """Annotated rows -> the summary's columns (internal names), with formatted CI and M-units."""
    t = t.copy()
    t["ci"] = [f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) else "" for lo, hi in
               zip(t["latency_ms_ci_low"], t["latency_ms_ci_high"], strict=True)]
    t["macs_effective"] = t["macs_effective"].astype("float64") / 1e6
    t["params_kept"] = t["params_kept"].astype("float64") / 1e6
    t["energy_ci"] = t["energy_mj_per_inf_ci"]
    if "run" not in t:
        t["run"] = pd.NA
    return t[list(SUMMARY)]


def summary_table(df: pd.DataFrame, base_targets: Mapping[str, str | None] | None = None) -> pd.DataFrame:
    """Every summary column under its header (empty ones too: callers pick columns by name), sorted."""
    return _display(annotate(df, base_targets)).rename(columns=SUMMARY)


def _empty(col: pd.Series) -> bool:
    return all(as_text(v) == "" for v in col)


def compact(t: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop all-empty columns; a value of ONCE shared by every row becomes one line above the table."""
    lines = []
    for col in (SUMMARY[c] for c in ONCE):
        values = {as_text(v) for v in t[col]} if col in t else set()
        if len(values) == 1 and "" not in values and len(t) > 1:
            lines.append(f"{col} (every row): {values.pop()}")
            t = t.drop(columns=col)
    return t[[c for c in t.columns if not _empty(t[c])]], lines


def terminal_summary(df: pd.DataFrame, width: int = 24) -> pd.DataFrame:
    """At most 8 short text columns for a 100-column terminal: model, variant, target, status, latency ms,
    top-1 and mJ/inf where any row has them, note (cut to `width`). Simulated/modeled figures say so."""
    t = annotate(df)

    def figure(v, kind) -> str:
        if is_missing(v):
            return ""
        k = as_text(kind)
        return f"{v:.3g}" + (f" ({k[:3]})" if k and k != "measured" else "")

    out = pd.DataFrame({
        "model": t["model"].map(as_text), "variant": t["variant"].map(as_text), "target": t["target"].map(as_text),
        "status": t["status"].map(as_text),
        "latency ms": [figure(v, k) for v, k in zip(t["latency_ms"], t["latency_kind"], strict=True)],
        "top-1": t["accuracy"].map(lambda v: "" if is_missing(v) else f"{v:.1%}"),
        "mJ/inf": [figure(v, k) for v, k in zip(t["energy_mj_per_inf"], t["energy_kind"], strict=True)],
        "note": t["note"].map(lambda n: n if len(n) <= width else n[:width - 1] + "…"),
    })
    return out[[c for c in out.columns if c in ("model", "variant", "target", "status") or not _empty(out[c])]]


def _is_gap(energy_note) -> bool:
    """A target's missing meter: said once per target by energy_gaps, not on every row."""
    return as_text(energy_note).startswith("energy unavailable")


def energy_gaps(df: pd.DataFrame) -> list[str]:
    """One line per target without energy figures, saying why (never a made-up number)."""
    if "energy_note" not in df:
        return []
    gaps = df[df["energy_mj_per_inf"].isna() & df["energy_note"].map(_is_gap)]
    return [f"{t}: {n}" for t, n in gaps.groupby("target")["energy_note"].first().items()]


def run_warnings(df: pd.DataFrame) -> list[str]:
    """The rows' warnings, each once, in order of appearance."""
    seen = dict.fromkeys(w.strip() for v in df.get("warnings", pd.Series(dtype="string")) for w in as_text(v).split(";"))
    return [w for w in seen if w]


def _origins(manifest: dict) -> list[str]:
    """A run resumed on another commit or host (with --force) says so."""
    origins = manifest.get("origins") or []
    if len(origins) < 2:
        return []
    return ["mixed run: cells come from " + "; ".join(f"commit {o['git_commit']} at host {o['host']}"
                                                      for o in origins) + " (see the git_commit and host columns)"]


def cell_text(v) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def to_markdown(t: pd.DataFrame) -> str:
    head = "| " + " | ".join(t.columns) + " |"
    sep = "|" + "|".join("---" for _ in t.columns) + "|"
    rows = ["| " + " | ".join(cell_text(v).replace("|", "\\|") for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


# ---- the report -----------------------------------------------------------------------------------------------

METHOD_NOTES = [
    "latency ms: the median (p50) of per-inference samples over all repeats for measured rows (CI: bootstrap "
    "of the median); the single deterministic figure for simulated or modeled rows, which have no "
    "distribution. Kinds of figure are never averaged together.",
    "energy: mJ/inf = integral of (P - P_idle) over each timed repeat / its inferences, mean over repeats "
    "(CI: t-interval over repeats); inf/J and GOPS/W on total energy (GOPS/W dense-eq: the dense model's "
    "operations); the meter is in the provenance.",
    "speedup / energy saving: the baseline's latency / energy per inference over the row's, against the dense "
    "variant of the same model and target (at the row's bits for pruned rows, else fp32 dense), figures of one "
    "kind only; MAC realization = speedup / (dense MACs / executed MACs), pruned rows only.",
]


@dataclass
class Report:
    title: str
    banner: list[str]  # said first: an incomplete run
    notes: list[str]
    rows: pd.DataFrame  # annotated, sorted, internal column names
    manifests: list[dict]
    root: Path | None = None  # the run directory, whose plots/ the HTML embeds (single runs)
    meta: dict = field(default_factory=dict)


def _host_line(manifest: dict, prefix: str = "") -> str:
    h = manifest.get("host") or {}
    return f"{prefix}host: {h.get('cpu', '?')} ({h.get('cores', '?')} cores), commit {manifest.get('git_commit') or 'unknown'}"


def build(run_dirs: str | Path | Sequence[str | Path]) -> Report:
    """The report of one run directory, or of several runs combined (a `run` column tells them apart)."""
    dirs = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not dirs:
        raise StoreError("no run directory given")
    manifests = [read_manifest(d) for d in dirs]
    labels = run_labels(dirs, manifests)
    single = len(dirs) == 1
    df = read_measurements(dirs[0]) if single else combine_runs(dirs, labels)
    targets = {k: baseline_target(m) for k, m in zip([""] if single else labels, manifests, strict=True)}
    prefixes = [""] if single else [f"{label}: " for label in labels]
    banner = [f"{p}{c}" for p, d, m in zip(prefixes, dirs, manifests, strict=True) if (c := completeness(d, m))]
    notes = [_host_line(m, p) for p, m in zip(prefixes, manifests, strict=True)]
    notes += METHOD_NOTES
    notes += [f"{p}speedup / energy saving vs base target: against the same model and variant on {t} (the "
              f"campaign's baseline_target; the kind columns say which kinds of figure each ratio divides)"
              for p, t in zip(prefixes, targets.values(), strict=True) if t]
    if warnings := run_warnings(df):
        notes.append("warnings: " + "; ".join(warnings))
    notes += energy_gaps(df) + [o for m in manifests for o in _origins(m)]
    title = f"joulebench — {labels[0].replace('/', ' / ')}" if single else f"joulebench — {len(dirs)} runs combined"
    meta = {"runs": [{"run": label, "path": str(d), **{k: m.get(k) for k in
                      ("campaign", "run_id", "started_at", "finished_at", "git_commit", "host")},
                      "baseline_target": baseline_target(m)}
                     for label, d, m in zip(labels, dirs, manifests, strict=True)]}
    return Report(title, banner, notes, annotate(df, targets), manifests,
                  Path(dirs[0]) if single else None, meta)


def _json_value(v):
    if is_missing(v):
        return None
    return v.item() if hasattr(v, "item") else v


def to_json(rep: Report) -> str:
    """Records of the summary (numbers unformatted, with the baseline ratios) and the runs' metadata."""
    cols = [c for c in SUMMARY if c not in ("ci", "energy_ci")] + [
        "baseline_target", "latency_ms_ci_low", "latency_ms_ci_high", "energy_mj_per_inf_ci",
        "energy_total_mj_per_inf", "macs_dense", "cell_id"]
    rows = [{c: _json_value(r.get(c)) for c in cols if c in rep.rows} for r in rep.rows.to_dict("records")]
    doc = {"title": rep.title, "incomplete": rep.banner or None, "notes": rep.notes, **rep.meta,
           "columns": {c: SUMMARY.get(c, c) for c in cols if c in rep.rows}, "rows": rows}
    return json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n"


def render(run_dir: str | Path | Sequence[str | Path], fmt: str = "md") -> str:
    """The report of `run_dir` (or of several run directories combined) as md, csv, html or json."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format '{fmt}' (expected {', '.join(FORMATS[:-1])} or {FORMATS[-1]})")
    if fmt == "csv":
        single = isinstance(run_dir, str | Path)
        return (read_measurements(run_dir) if single else combine_runs(run_dir)).to_csv(index=False)
    rep = build(run_dir)
    if fmt == "json":
        return to_json(rep)
    table, once = compact(_display(rep.rows).rename(columns=SUMMARY))
    if fmt == "md":
        return "\n\n".join([f"# {rep.title}", *[f"**{b}**" for b in rep.banner],
                            *[f"- {n}" for n in rep.notes + once], to_markdown(table)]) + "\n"
    manifest = rep.manifests[0] if len(rep.manifests) == 1 else {"runs": rep.manifests}
    return _html(rep.title, rep.notes + once, table, rep.root, manifest, banner=rep.banner)


STYLE = (
    "*{box-sizing:border-box}"
    "body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em 1.5em;max-width:1400px;overflow-wrap:anywhere}"
    "h1{font-size:1.4em}.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;font-weight:600}"
    ".scroll{max-width:100%;overflow:auto;max-height:85vh;border:1px solid #ddd}"
    ".t{border-collapse:collapse;font-size:13px}.t td,.t th{padding:4px 8px;border-bottom:1px solid #ddd;"
    "white-space:nowrap;text-align:left}.t td.n{text-align:right}"
    ".t thead th{position:sticky;top:0;background:#f6f6f6;z-index:1}"
    "img{max-width:100%;height:auto}figure{margin:1em 0}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere}"
)


def _html(title: str, notes: list[str], t: pd.DataFrame, run_dir: Path | None, manifest: dict,
          banner: Sequence[str] = ()) -> str:
    """A self-contained page that fits a laptop screen: wide tables scroll in their own box, figures shrink.
    The figures are run_dir/plots/*.png (none without a run_dir)."""
    imgs = []
    for png in sorted((Path(run_dir) / "plots").glob("*.png")) if run_dir else []:
        data = base64.b64encode(png.read_bytes()).decode()
        imgs.append(f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    table = _html_table(t)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(f"<p class='banner'>{html.escape(b)}</p>" for b in banner)
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes) + f"<div class='scroll'>{table}</div>"
            + "".join(imgs)
            + f"<details><summary>manifest</summary><pre>{html.escape(json.dumps(manifest, indent=2))}</pre>"
            "</details></body></html>")


def _html_table(t: pd.DataFrame) -> str:
    """The table with the Markdown's cell texts (empty, never <NA>); numbers right-aligned (class n)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)

    def cell(v) -> str:
        number = isinstance(v, numbers.Real) and not isinstance(v, bool)
        return f"<td{' class=n' if number else ''}>{html.escape(cell_text(v))}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in t.itertuples(index=False))
    return f"<table class='t'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_reports(run_dir: str | Path) -> list[Path]:
    out = []
    for fmt, name in (("md", "report.md"), ("csv", "report.csv"), ("html", "report.html")):
        p = Path(run_dir) / name
        p.write_text(render(run_dir, fmt))
        out.append(p)
    return out
