"""Seaborn figures of a run directory, saved as PNG and SVG under DIR/plots/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.store import RunStore  # noqa: E402


def latency_plot(run_dir: str | Path) -> list[Path]:
    """Per-inference latency distribution for each model x variant x target (log scale if wide)."""
    store = RunStore(run_dir)
    df, samples = store.measurements(), store.samples()
    ok = df[df["status"] == "ok"][["cell_id", "model", "variant", "target"]]
    data = samples.merge(ok, on="cell_id")
    if data.empty:
        return []
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    n_models = data["model"].nunique()
    g = sns.catplot(data=data, kind="box", x="target", y="latency_ms", hue="variant", col="model",
                    col_wrap=min(n_models, 3), sharey=False, showfliers=False, height=4, aspect=1.2)
    spread = data["latency_ms"].max() / max(data["latency_ms"].min(), 1e-9)
    for ax in g.axes.flat:
        if spread > 20:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=20)
    g.set_axis_labels("target", "latency per inference (ms, measured)")
    g.figure.suptitle("Inference latency (box: p25–p75, whiskers 1.5 IQR)", y=1.03)
    paths = [out_dir / "latency.png", out_dir / "latency.svg"]
    for p in paths:
        g.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(g.figure)
    return paths


def efficiency_plot(run_dir: str | Path) -> list[Path]:
    """Energy efficiency (inferences per joule = FPS/W, and GOPS/W) for every cell with a meter."""
    df = RunStore(run_dir).measurements()
    data = df[(df["status"] == "ok") & df["inf_per_j"].notna()] if "inf_per_j" in df else df.iloc[0:0]
    if data.empty:
        return []
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    long = data.melt(id_vars=["model", "variant", "target", "meter"], value_vars=["inf_per_j", "gops_per_w"],
                     var_name="metric", value_name="value")
    long["metric"] = long["metric"].map({"inf_per_j": "inferences / J (= FPS/W)", "gops_per_w": "GOPS / W"})
    g = sns.catplot(data=long, kind="bar", x="target", y="value", hue="variant", row="metric", col="model",
                    sharey=False, height=3.5, aspect=1.3)
    g.set_titles("{row_name} | {col_name}")
    g.set_axis_labels("target", "measured (meter in provenance)")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=20)
    paths = [out_dir / "efficiency.png", out_dir / "efficiency.svg"]
    for p in paths:
        g.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(g.figure)
    return paths


def all_plots(run_dir: str | Path) -> list[Path]:
    return latency_plot(run_dir) + efficiency_plot(run_dir)
