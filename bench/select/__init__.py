"""QoE-optimal variant selection: which compressed variant should each device run?

After Lu, Yang, Chen, Ren, "Automating Deep Neural Network Model Selection for Edge Inference" (IEEE CogMI 2019):
a contextual multi-armed bandit whose arms are the variants of the given runs, whose contexts are features of the
device and of each variant on it, and whose reward is the user's QoE, observed with noise.

- `qoe`: the user-defined QoE expression (safe parser, default expression and parameters);
- `bandits`: LinUCB, NeuralUCB, linear Thompson sampling, epsilon-greedy, random and fixed policies;
- `simulate`: the device model, the simulated device/user population and the regret comparison;
- `recommend`: the per-device recommendation for the devices present in the runs.

This module holds the arms: one per (model, variant) of the runs, with its features and every row's figures
(latency and energy with their kind and provenance). Docs: docs/select.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


LEARNERS = ("linucb", "neuralucb", "thompson", "egreedy")  # the --algo values (bandits.make)


class SelectError(ValueError):
    """A problem with the inputs of `joulebench select`; the message is one line."""


def _num(v) -> float | None:
    """A finite float, or None for NA/NaN/missing (float(pd.NA) raises TypeError)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v) -> str | None:
    import pandas as pd  # loaded already by read_rows; kept out of import time so `joulebench --help` stays fast

    return None if v is None or pd.isna(v) else str(v)


@dataclass(frozen=True)
class Observation:
    """One finished row of an arm: its figures on one (target, device), with where each came from."""

    run: str
    target: str
    device: str
    board: str | None
    latency_ms: float
    latency_kind: str  # measured | simulated | modeled
    latency_provenance: str
    latency_ci_ms: tuple[float, float] | None  # bootstrap 95% CI of a measured median
    energy_mj: float | None  # idle-subtracted, per inference
    energy_kind: str | None
    energy_provenance: str | None
    energy_ci_mj: float | None  # 95% half-width (measured only)

    @property
    def device_key(self) -> str:
        return f"{self.target}@{self.device}"


@dataclass(frozen=True)
class Arm:
    """A variant: its features (from the rows) and every row's figures."""

    model: str
    variant: str
    scheme: str | None
    sparsity: float
    bits: int
    precision: str
    macs_dense: float
    macs_effective: float
    params: float
    params_kept: float
    accuracy: float | None
    accuracy_dataset: str | None
    campaign: str
    observations: tuple[Observation, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.variant}"

    @property
    def weight_bytes(self) -> float:
        """Bytes of the kept weights at their stored width (fp16 precision stores 2 bytes)."""
        width = 16 if self.precision == "fp16" and self.bits >= 16 else self.bits
        return self.params_kept * width / 8

    def features(self) -> dict:
        """The variant context (what every output shows of an arm)."""
        return {"model": self.model, "variant": self.variant, "scheme": self.scheme, "sparsity": self.sparsity,
                "bits": self.bits, "precision": self.precision, "macs_dense": self.macs_dense,
                "macs_effective": self.macs_effective, "params_kept": self.params_kept,
                "accuracy": self.accuracy, "accuracy_dataset": self.accuracy_dataset}


def read_rows(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The finished rows (status ok, with a latency) of every run, with a `run` column; one-line errors."""
    import pandas as pd

    from bench.store import RunStore

    if not run_dirs:
        raise SelectError("no RUN_DIR given: pass one or more run directories (they hold measurements.parquet)")
    frames = []
    for d in run_dirs:
        p = Path(d)
        if not p.is_dir():
            raise SelectError(f"{p}: no such run directory")
        df = RunStore(p).measurements()  # StoreError (one line) when there is no parquet or a bad version
        ok = df[(df["status"] == "ok") & df["latency_ms"].notna()]
        if ok.empty:
            why = f"{len(df)} rows, none finished ok with a latency" if len(df) else "no rows"
            raise SelectError(f"{p}: empty run ({why}): nothing to select from")
        frames.append(ok.assign(run=str(p)))
    return pd.concat(frames, ignore_index=True)


def _observation(r: dict) -> Observation:
    lo, hi = _num(r.get("latency_ms_ci_low")), _num(r.get("latency_ms_ci_high"))
    energy = _num(r.get("energy_mj_per_inf"))
    return Observation(
        run=str(r["run"]), target=str(r.get("target")), device=_str(r.get("device")) or str(r.get("target")),
        board=_str(r.get("board")), latency_ms=float(r["latency_ms"]),
        latency_kind=_str(r.get("latency_kind")) or "measured",
        latency_provenance=_str(r.get("latency_provenance")) or "measured:unknown",
        latency_ci_ms=(lo, hi) if lo is not None and hi is not None else None,
        energy_mj=energy, energy_kind=_str(r.get("energy_kind")) if energy is not None else None,
        energy_provenance=_str(r.get("energy_provenance")) if energy is not None else None,
        energy_ci_mj=_num(r.get("energy_mj_per_inf_ci")))


def load_arms(run_dirs: Sequence[str | Path]) -> list[Arm]:
    """One arm per (model, variant) of the runs; a label used by two campaigns for different variants
    (other MACs, bits or accuracy) becomes two arms, `variant@campaign`."""
    rows = read_rows(run_dirs)
    groups: dict[tuple, list[dict]] = {}
    for r in rows.to_dict("records"):
        # macs_masked is the variant's own work; macs_effective depends on the target (a baseline runs it dense)
        macs = _num(r.get("macs_masked")) or _num(r.get("macs_effective")) or _num(r.get("macs_dense"))
        ident = (str(r["model"]), str(r["variant"]), _num(r.get("bits")), macs, _num(r.get("accuracy")),
                 _str(r.get("precision")))
        groups.setdefault(ident, []).append(r)
    labels: dict[tuple[str, str], int] = {}
    for ident in groups:
        labels[ident[:2]] = labels.get(ident[:2], 0) + 1
    arms = []
    for ident, rs in groups.items():
        r0 = rs[0]
        variant = ident[1] if labels[ident[:2]] == 1 else f"{ident[1]}@{r0.get('campaign')}"
        dense = _num(r0.get("macs_dense"))
        eff = _num(r0.get("macs_masked")) or _num(r0.get("macs_effective")) or dense
        if dense is None or eff is None:
            raise SelectError(f"{r0['run']}: {ident[0]}/{ident[1]}: the rows carry no MAC count (macs_dense)")
        bits = int(_num(r0.get("bits")) or 32)
        arms.append(Arm(
            model=ident[0], variant=variant, scheme=_str(r0.get("scheme")), sparsity=_num(r0.get("sparsity")) or 0.0,
            bits=bits, precision=_str(r0.get("precision")) or ("fp32" if bits == 32 else f"int{bits}"),
            macs_dense=dense, macs_effective=eff, params=_num(r0.get("params")) or 0.0,
            params_kept=_num(r0.get("params_kept")) or _num(r0.get("params")) or 0.0,
            accuracy=_num(r0.get("accuracy")), accuracy_dataset=_str(r0.get("accuracy_dataset")),
            campaign=str(r0.get("campaign")), observations=tuple(_observation(r) for r in rs)))
    return sorted(arms, key=lambda a: (a.model, a.macs_effective * a.bits, a.variant))


__all__ = ["LEARNERS", "Arm", "Observation", "SelectError", "load_arms", "read_rows"]
