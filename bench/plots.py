"""Seaborn figures of a run directory, saved as PNG and SVG under DIR/plots/.

Measured, simulated and modeled figures are never pooled: measured latencies are drawn as boxes of
their samples, simulated/modeled ones as single markers (one shape per kind), and bars of simulated or
modeled energy are hatched. Each kind is named in the legend and the axis labels.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from bench.store import RunStore  # noqa: E402

MARKERS = {"simulated": "^", "modeled": "D"}
HATCH = {"measured": "", "simulated": "..", "modeled": "//"}


def _save(fig, run_dir: str | Path, name: str) -> list[Path]:
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def _plain(value: float, _pos=None) -> str:
    """0.001, 0.5, 2, 600, 10,000: a plain number (3 significant digits) however small or large the axis, never
    6x10^-1 or 1e+03."""
    if value <= 0:
        return ""
    if value >= 1000:
        return f"{value:,.0f}"
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def plain_log_labels(axis) -> None:
    """Plain labels on a log axis: every decade; between decades 2 and 5 when the axis spans under two decades,
    every minor tick under 0.6 of a decade (such an axis may have no decade tick to label at all)."""

    def minor(value: float, _pos=None) -> str:
        lo, hi = sorted(axis.get_view_interval())
        decades = np.log10(max(hi, 1e-12) / max(lo, 1e-12))
        mantissa = round(value / 10 ** np.floor(np.log10(value) + 1e-9)) if value > 0 else 0
        shown = decades < 0.6 or (decades < 2 and mantissa in (2, 5))
        return _plain(value) if shown else ""

    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(FuncFormatter(minor))


def _spread(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.max() / max(v.min(), 1e-9)) if len(v) else 1.0


def _kind(df: pd.DataFrame, col: str) -> pd.Series:
    return df[col].fillna("measured").astype(str) if col in df else pd.Series("measured", index=df.index)


def latency_plot(run_dir: str | Path) -> list[Path]:
    """Per-inference latency for each model x variant x target: measured samples as boxes (p25-p75,
    whiskers 1.5 IQR), simulated/modeled figures as single markers."""
    store = RunStore(run_dir)
    df, samples = store.measurements(), store.samples()
    ok = df[(df["status"] == "ok") & df["latency_ms"].notna()].copy()
    if ok.empty:
        return []
    ok["kind"] = _kind(ok, "latency_kind")
    measured = samples.merge(ok[ok["kind"] == "measured"][["cell_id", "model", "variant", "target"]], on="cell_id")
    points = ok[ok["kind"] != "measured"]
    sns.set_theme(style="whitegrid", context="notebook")
    models = list(dict.fromkeys(ok["model"]))
    variants = list(dict.fromkeys(ok["variant"]))
    palette = dict(zip(variants, sns.color_palette(n_colors=len(variants)), strict=True))
    ncol = min(len(models), 3)
    nrow = -(-len(models) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4.2 * nrow), squeeze=False)
    log = _spread(pd.concat([measured["latency_ms"], points["latency_ms"]])) > 20
    for ax, model in zip(axes.flat, models, strict=False):
        sub = ok[ok["model"] == model]
        order = list(dict.fromkeys(sub["target"]))
        hue_order = [v for v in variants if v in set(sub["variant"])]
        m = measured[measured["model"] == model]
        if not m.empty:
            sns.boxplot(data=m, x="target", y="latency_ms", hue="variant", order=order, hue_order=hue_order,
                        palette=palette, showfliers=False, ax=ax, legend=False)
        for kind, marker in MARKERS.items():
            p = points[(points["model"] == model) & (points["kind"] == kind)]
            if not p.empty:
                sns.stripplot(data=p, x="target", y="latency_ms", hue="variant", order=order, hue_order=hue_order,
                              palette=palette, dodge=len(hue_order) > 1, marker=marker, size=10, linewidth=1,
                              edgecolor="black", jitter=False, ax=ax, legend=False)
        if log:
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)
        ax.set_title(model)
        ax.set_xlabel("target")
        ax.set_ylabel("latency per inference (ms)")
        ax.tick_params(axis="x", rotation=20)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=palette[v], label=v) for v in variants]
    handles.append(Patch(facecolor="white", edgecolor="black", label="measured: box of samples"))
    handles += [Line2D([], [], marker=mk, linestyle="", color="gray", markeredgecolor="black", markersize=9,
                       label=f"{k}: one deterministic figure") for k, mk in MARKERS.items() if (points["kind"] == k).any()]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
    fig.suptitle("Inference latency (kinds of figure kept apart; see legend)", y=1.02)
    fig.tight_layout()
    return _save(fig, run_dir, "latency")


# row of the efficiency figure: column, axis label (with its unit), CI half-width column (measured only)
EFFICIENCY = (
    ("energy_mj_per_inf", "energy (mJ/inference)", "energy_mj_per_inf_ci"),
    ("inf_per_j", "inferences/J (= FPS/W)", None),
    ("gops_per_w", "GOPS/W", None),
)


def _bars(ax, data: pd.DataFrame, col: str, ci: str | None, order: list[str], palette: dict) -> None:
    """Grouped bars (targets on x, one bar per variant) hatched by energy kind, with the 95% CI of measured ones."""
    variants = [v for v in palette if v in set(data["variant"])]
    width = 0.8 / max(len(variants), 1)
    for i, variant in enumerate(variants):
        sub = data[(data["variant"] == variant) & data[col].notna()]
        for r in sub.itertuples():
            x = order.index(r.target_kind) - 0.4 + width * (i + 0.5)
            value = getattr(r, col)
            ax.bar(x, value, width, color=palette[variant], hatch=HATCH[r.kind], edgecolor="black", linewidth=0.6)
            half = getattr(r, ci) if ci else None
            if r.kind == "measured" and half is not None and pd.notna(half):
                ax.errorbar(x, value, yerr=half, color="black", capsize=3, linewidth=1)
    ax.set_xticks(range(len(order)), order, rotation=20)


def efficiency_plot(run_dir: str | Path) -> list[Path]:
    """Energy per inference (with its 95% CI where measured), inferences per joule (= FPS/W) and GOPS/W for
    every cell with an energy figure; bars of simulated/modeled energy are hatched, their targets labelled."""
    df = RunStore(run_dir).measurements()
    data = df[(df["status"] == "ok") & (df["inf_per_j"].notna() | df["energy_mj_per_inf"].notna())].copy()
    if data.empty:
        return []
    data["kind"] = _kind(data, "energy_kind")
    data["target_kind"] = [t if k == "measured" else f"{t}\n[{k}]" for t, k in zip(data["target"], data["kind"],
                                                                                   strict=True)]
    sns.set_theme(style="whitegrid", context="notebook")
    variants = list(dict.fromkeys(data["variant"]))
    palette = dict(zip(variants, sns.color_palette(n_colors=len(variants)), strict=True))
    models = list(dict.fromkeys(data["model"]))
    rows = [m for m in EFFICIENCY if data[m[0]].notna().any()]
    fig, axes = plt.subplots(len(rows), len(models), figsize=(4.8 * len(models), 3.6 * len(rows)), squeeze=False)
    for (col, label, ci), ax_row in zip(rows, axes, strict=True):
        log = _spread(data[col]) > 20
        for ax, model in zip(ax_row, models, strict=True):
            sub = data[data["model"] == model]
            order = list(dict.fromkeys(sub["target_kind"]))
            _bars(ax, sub, col, ci, order, palette)
            if log:
                ax.set_yscale("log")
                plain_log_labels(ax.yaxis)
            ax.set_title(model)
            ax.set_xlabel("target")
            ax.set_ylabel(label)
    present = sorted(set(data["kind"]), key=list(HATCH).index)
    handles = [Patch(facecolor=palette[v], label=v) for v in variants]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCH[k], label=f"{k} energy") for k in present]
    if "measured" in present and any(ci and data[ci].notna().any() for _, _, ci in rows):
        handles.append(Line2D([], [], color="black", marker="_", markersize=10, label="95% CI (measured)"))
    fig.legend(handles=handles, title="variant, figure kind", loc="upper left", bbox_to_anchor=(1.0, 0.95),
               frameon=False)
    fig.suptitle("Energy efficiency\nmJ/inference: idle-subtracted; inferences/J, GOPS/W: total energy",
                 y=1.02, fontsize="medium")
    fig.tight_layout()
    return _save(fig, run_dir, "efficiency")


def all_plots(run_dir: str | Path) -> list[Path]:
    return latency_plot(run_dir) + efficiency_plot(run_dir)
