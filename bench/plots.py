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
    values = pd.concat([measured["latency_ms"], points["latency_ms"]])
    log = values.max() / max(values.min(), 1e-9) > 20
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


def efficiency_plot(run_dir: str | Path) -> list[Path]:
    """Energy efficiency (inferences per joule = FPS/W, and GOPS/W) for every cell with an energy
    figure; bars of simulated/modeled energy are hatched and their targets labelled with the kind."""
    df = RunStore(run_dir).measurements()
    data = df[(df["status"] == "ok") & df["inf_per_j"].notna()].copy()
    if data.empty:
        return []
    data["kind"] = _kind(data, "energy_kind")
    data["target_kind"] = [t if k == "measured" else f"{t}\n[{k}]" for t, k in zip(data["target"], data["kind"],
                                                                                   strict=True)]
    sns.set_theme(style="whitegrid", context="notebook")
    long = data.melt(id_vars=["model", "variant", "target_kind", "kind"], value_vars=["inf_per_j", "gops_per_w"],
                     var_name="metric", value_name="value")
    long["metric"] = long["metric"].map({"inf_per_j": "inferences / J (= FPS/W)", "gops_per_w": "GOPS / W"})
    variants = list(dict.fromkeys(data["variant"]))
    palette = dict(zip(variants, sns.color_palette(n_colors=len(variants)), strict=True))
    order = list(dict.fromkeys(data["target_kind"]))
    g = sns.catplot(data=long, kind="bar", x="target_kind", y="value", hue="variant", row="metric", col="model",
                    order=order, hue_order=variants, palette=palette, saturation=1, sharey=False, height=3.5, aspect=1.3)
    g.set_titles("{row_name} | {col_name}")
    g.set_axis_labels("target", "per joule of total energy")
    kinds = {(r.model, r.variant, r.target_kind): r.kind for r in data.itertuples()}
    for (_metric, model), ax in g.axes_dict.items():
        for bar in ax.patches:
            # the bar's variant by its colour (seaborn's containers are unlabelled), its target by position
            variant = next((v for v, c in palette.items() if np.allclose(bar.get_facecolor()[:3], c, atol=1e-3)), None)
            xi = round(bar.get_x() + bar.get_width() / 2)
            kind = kinds.get((model, variant, order[xi] if 0 <= xi < len(order) else None))
            if kind:
                bar.set_hatch(HATCH[kind])
                bar.set_edgecolor("black")
        ax.tick_params(axis="x", rotation=20)
    present = sorted(set(data["kind"]), key=list(HATCH).index)
    g.figure.legend(handles=[Patch(facecolor="white", edgecolor="black", hatch=HATCH[k], label=k) for k in present],
                    title="figure kind", loc="lower left", bbox_to_anchor=(1.0, 0.1), frameon=False)
    return _save(g.figure, run_dir, "efficiency")


def all_plots(run_dir: str | Path) -> list[Path]:
    return latency_plot(run_dir) + efficiency_plot(run_dir)
