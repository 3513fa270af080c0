"""The study's figures from the study frame, as PNG + SVG under OUT/plots/, each with the plotted data beside
it as CSV (OUT/plots/<figure>.csv: one line per point, with its kind and the cell it came from).

Every point's marker says its kind (measured o, simulated ^, modeled D, as in bench.plots); kinds are never
pooled, and a pair (speedup, saving) takes the weaker kind of its two rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from bench.reproduce.findings import pruning_pairs
from bench.reproduce.study import KINDS, LEVEL_ORDER, PRECISION_ORDER

# bench.plots' markers for simulated/modeled figures, and o for measured ones
KIND_MARKERS = {"measured": "o", "simulated": "^", "modeled": "D"}
BASIS = "idle-subtracted energy"


def _sns():
    """seaborn, themed, imported only when a figure is drawn (a warm re-run draws none; the import takes ~2 s)."""
    import seaborn as sns

    from bench import plots  # sets the Agg backend

    assert {k: KIND_MARKERS[k] for k in plots.MARKERS} == plots.MARKERS
    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def _write(df: pd.DataFrame, out: Path, name: str) -> tuple[Path, list[Path] | None]:
    """Write the figure's data; (csv, [png, svg]) when the drawn figure is already there for exactly these data
    and this module's code (a warm re-run redraws nothing), else (csv, None)."""
    d = out / "plots"
    d.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False)
    key = hashlib.sha256((text + Path(__file__).read_text()).encode()).hexdigest()
    csv, stamp, drawn = d / f"{name}.csv", d / f".{name}.key", [d / f"{name}.png", d / f"{name}.svg"]
    fresh = stamp.exists() and stamp.read_text() == key and all(p.exists() for p in drawn)
    if not (csv.exists() and csv.read_text() == text):
        csv.write_text(text)
    stamp.unlink(missing_ok=True)
    if fresh:
        stamp.write_text(key)
        return csv, drawn
    for p in drawn:
        p.unlink(missing_ok=True)
    return csv, None


def _saved(fig, out: Path, name: str, csv: Path) -> list[Path]:
    from bench.plots import _save

    paths = _save(fig, out, name)
    (out / "plots" / f".{name}.key").write_text(
        hashlib.sha256((csv.read_text() + Path(__file__).read_text()).encode()).hexdigest())
    return [csv, *paths]


def _order(values, order) -> list:
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def efficiency_data(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[(df["status"] == "ok") & df["energy_mj"].notna() & df["energy_kind_s"].notna()
            & df["precision_name"].notna()]
    cols = ["model", "level", "precision_name", "device_class", "device_label", "target", "energy_kind_s",
            "energy_provenance", "energy_mj", "inf_per_j_active", "gops_per_w_active", "accuracy",
            "accuracy_dataset", "cell_id", "run"]
    out = ok[[c for c in cols if c in ok]].rename(columns={"precision_name": "precision", "device_label": "device",
                                                           "energy_kind_s": "kind"})
    rank = out["precision"].map(lambda p: PRECISION_ORDER.index(p) if p in PRECISION_ORDER else 99)
    return out.assign(_r=rank).sort_values(["model", "_r"], kind="stable").drop(columns="_r").reset_index(drop=True)


def efficiency_figure(df: pd.DataFrame, out: Path) -> list[Path]:
    """Inferences/J and GOPS/W per device vs precision (one panel row per pruning level, one column per metric)."""
    data = efficiency_data(df)
    csv, drawn = _write(data, out, "efficiency")
    if drawn is not None or data.empty:
        return [csv, *(drawn or [])]
    long = _long(data, {"inf_per_j_active": "inferences / J", "gops_per_w_active": "GOPS / W"})
    long["panel"] = long["model"] + " | " + long["level"]
    sns = _sns()
    g = sns.relplot(data=long, kind="scatter", x="precision", y="value", hue="device", style="kind",
                    markers=KIND_MARKERS, style_order=[k for k in KINDS if k in set(long["kind"])],
                    row="panel", col="metric", row_order=_panel_order(long), facet_kws={"sharey": False},
                    s=90, edgecolor="black", height=3.2, aspect=1.5)
    for ax in g.axes.flat:
        ax.set_yscale("log")
    g.set_titles("{row_name} | {col_name}")
    g.set_axis_labels("precision", f"per joule of {BASIS}")
    g.figure.suptitle("Energy efficiency per device vs precision (marker = kind of figure)", y=1.01)
    return _saved(g.figure, out, "efficiency", csv)


def _long(data: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """One line per (point, metric), the metric named for the panel titles."""
    long = data.melt(id_vars=["model", "level", "precision", "device", "kind"], value_vars=list(metrics),
                     var_name="metric", value_name="value")
    return long.assign(metric=long["metric"].map(metrics))


def _panel_order(long: pd.DataFrame) -> list[str]:
    keys = long.drop_duplicates("panel")[["panel", "model", "level"]]
    keys = keys.assign(li=keys["level"].map(lambda v: LEVEL_ORDER.index(v) if v in LEVEL_ORDER else 99))
    return list(keys.sort_values(["model", "li"])["panel"])


def pruning_data(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(pruning_pairs(df), columns=["model", "precision", "device", "device_class", "level",
                                                   "speedup", "energy_saving", "kind", "dense_cell_id",
                                                   "pruned_cell_id"])


def pruning_figure(df: pd.DataFrame, out: Path) -> list[Path]:
    """Speedup and energy saving of block pruning (dense / pruned) per device and precision."""
    data = pruning_data(df)
    csv, drawn = _write(data, out, "pruning")
    if drawn is not None or data.empty:
        return [csv, *(drawn or [])]
    long = _long(data, {"speedup": "speedup (dense / pruned latency)",
                        "energy_saving": "energy saving (dense / pruned energy)"})
    long["x"] = long["device"] + "\n" + long["level"]
    sns = _sns()
    g = sns.relplot(data=long, kind="scatter", x="x", y="value", hue="precision",
                    hue_order=_order(long["precision"], PRECISION_ORDER), style="kind", markers=KIND_MARKERS,
                    style_order=[k for k in KINDS if k in set(long["kind"])], row="model", col="metric",
                    facet_kws={"sharey": False}, s=90, edgecolor="black", height=3.4, aspect=1.6)
    for ax in g.axes.flat:
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.tick_params(axis="x", rotation=30)
    g.set_titles("{row_name} | {col_name}")
    g.set_axis_labels("device, pruning level", "x over dense")
    g.figure.suptitle("Block pruning: speedup and energy saving per device (marker = weaker kind of the pair)", y=1.01)
    return _saved(g.figure, out, "pruning", csv)


def pareto(points: pd.DataFrame) -> pd.Series:
    """True for points no other point beats on both energy (lower) and accuracy (higher)."""
    e, a = points["energy_mj"].to_numpy(), points["accuracy"].to_numpy()
    front = [not (((e <= e[i]) & (a >= a[i]) & ((e < e[i]) | (a > a[i]))).any()) for i in range(len(points))]
    return pd.Series(front, index=points.index)


def accuracy_data(df: pd.DataFrame) -> pd.DataFrame:
    data = efficiency_data(df)
    data = data[data["accuracy"].notna()].copy()
    data["pareto"] = False
    for _, g in data.groupby("model"):
        data.loc[g.index, "pareto"] = pareto(g)
    return data.reset_index(drop=True)


def accuracy_figure(df: pd.DataFrame, out: Path) -> list[Path]:
    """Held-out accuracy vs energy per inference, every (variant, device) a point, the Pareto front drawn."""
    data = accuracy_data(df)
    csv, drawn = _write(data, out, "accuracy_energy")
    if drawn is not None or data.empty:
        return [csv, *(drawn or [])]
    sns = _sns()
    g = sns.relplot(data=data, kind="scatter", x="energy_mj", y="accuracy", hue="precision",
                    hue_order=_order(data["precision"], PRECISION_ORDER), style="kind", markers=KIND_MARKERS,
                    style_order=[k for k in KINDS if k in set(data["kind"])], col="model", s=90,
                    edgecolor="black", height=4, aspect=1.3)
    for model, ax in g.axes_dict.items():
        front = data[(data["model"] == model) & data["pareto"]].sort_values("energy_mj")
        ax.plot(front["energy_mj"], front["accuracy"], color="black", linestyle="-", drawstyle="steps-post",
                linewidth=1.2, label="Pareto front")
        ax.set_xscale("log")
    g.set_axis_labels(f"mJ per inference ({BASIS}, log)", "held-out top-1")
    g.figure.suptitle("Accuracy vs energy per inference, Pareto front (marker = kind of the energy figure)", y=1.03)
    return _saved(g.figure, out, "accuracy_energy", csv)


def all_figures(df: pd.DataFrame, out: Path) -> list[Path]:
    return efficiency_figure(df, out) + pruning_figure(df, out) + accuracy_figure(df, out)
