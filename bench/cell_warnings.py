"""Warnings about a finished cell: results that are real but easy to misread.

Each is one line, stored in the cell's row (`warnings`), gathered in the run's `warnings.json` and
printed after the run. None of them fails a cell.
"""

from __future__ import annotations

CV_LIMIT = 0.10  # latency coefficient of variation above which the machine was not steady
CHANCE_MARGIN = 0.05  # top-1 within this of 1/classes is at chance


def cell_warnings(row: dict, variant_manifest: dict, snapshot_empty: bool | None, classes: int | None) -> list[str]:
    """The warnings of one cell, from its row, its variant's manifest and its device snapshot."""
    out = []
    model = row.get("model")
    steps = variant_manifest.get("compression") or {}
    trained = variant_manifest.get("checkpoint") or any(steps.get(k) for k in (
        "pretrain_epochs", "finetune_epochs", "qat_epochs", "admm_epochs")) or steps.get("method", "oneshot") != "oneshot"
    if variant_manifest.get("source") == "zoo" and not trained:
        out.append(f"{model} / {row.get('variant')}: never trained (seeded weights, no checkpoint or training): "
                   "latency and energy are real, accuracy is not meaningful")
    acc = row.get("accuracy")
    if trained and acc is not None and classes and acc < 1 / classes + CHANCE_MARGIN:  # untrained: said above
        out.append(f"{model} / {row.get('variant')}: top-1 {acc:.1%} is at chance ({classes} classes): "
                   "train longer (finetune_epochs, qat_epochs) before reading its accuracy")
    full = [la["layer"] for la in variant_manifest.get("layers") or [] if (la.get("achieved_sparsity") or 0) >= 1.0]
    if full:
        out.append(f"{model} / {row.get('variant')}: layer {', '.join(full)} pruned to 100% (its output is constant)")
    cv = row.get("latency_cv")
    if cv is not None and cv == cv and cv > CV_LIMIT:
        out.append(f"{row.get('target')}: latency CV {cv:.0%} > {CV_LIMIT:.0%} for {model} / {row.get('variant')}: "
                   "the machine was not steady (other load, frequency scaling); its medians are less reliable")
    if snapshot_empty:
        out.append(f"{row.get('target')}: the device snapshot is empty (no clocks or temperatures readable): "
                   "throttling cannot be detected")
    return out
