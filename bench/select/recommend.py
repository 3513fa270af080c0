"""Per-device recommendation: for every (target, device) of the runs, the variant with the best expected QoE.

Candidates on a device are the variants with a finished row there (their figures and provenance as recorded) and,
where the device can be described (catalog entry, or achieved rates of its rows), the other variants predicted by
`modeled:select-roofline@1`. Confidence is the probability that the recommended variant is the best, over the
uncertainty of the figures (Monte Carlo, seeded): measured figures vary within their 95% CIs, modeled ones by a
stated relative error; accuracy is taken as exact. The chosen bandit is also replayed online on these devices (QoE
observed with noise) and its settled pick reported beside the recommendation.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.select import Arm, SelectError
from bench.select import simulate as S
from bench.select.qoe import QoE

MODEL_ERROR = 0.25  # relative sd of another model's modeled figure (no validation error stored with the row)
OWN_MODEL_ERROR = 0.5  # relative sd of select-roofline@1's predictions (its nominal efficiencies are assumptions)
ASSUMED_POWER_ERROR = 0.5  # relative sd of an energy from an assumed active power
FALLBACK_MEASURED = 0.05  # relative sd of a measured figure without a CI
SAMPLES = 4000


@dataclass(frozen=True)
class Candidate:
    arm: Arm
    latency_ms: float
    energy_mj: float
    latency_provenance: str
    energy_provenance: str
    latency_sd: float  # relative (lognormal) sd
    energy_sd: float
    source: str  # row | model


def _rel_sd(kind: str | None, value: float, ci: tuple[float, float] | float | None) -> float:
    if kind == "measured":
        if isinstance(ci, tuple) and value > 0:
            return max((ci[1] - ci[0]) / (2 * 1.96 * value), 0.0)
        if isinstance(ci, float) and value > 0:
            return ci / 1.96 / value
        return FALLBACK_MEASURED
    if kind == "simulated":
        return 0.0  # deterministic: the real design executed
    return MODEL_ERROR


def candidates(spec: S.DeviceSpec, arms: Sequence[Arm], predict_missing: bool = True) -> list[Candidate]:
    out = []
    for arm in arms:
        obs = spec.rows.get(arm.key)
        if obs is None and not predict_missing:
            continue
        p = S.predict(arm, spec)
        if obs is not None:
            lat_sd = _rel_sd(obs.latency_kind, obs.latency_ms, obs.latency_ci_ms)
            e_sd = (_rel_sd(obs.energy_kind, obs.energy_mj, obs.energy_ci_mj) if obs.energy_mj is not None
                    else ASSUMED_POWER_ERROR if spec.power_assumed else MODEL_ERROR)
            out.append(Candidate(arm, p.latency_ms, p.energy_mj, p.latency_provenance, p.energy_provenance,
                                 lat_sd, e_sd, "row"))
        else:
            e_sd = max(OWN_MODEL_ERROR, ASSUMED_POWER_ERROR if spec.power_assumed else 0.0)
            out.append(Candidate(arm, p.latency_ms, p.energy_mj, p.latency_provenance, p.energy_provenance,
                                 OWN_MODEL_ERROR, e_sd, "model"))
    return out


def _qoe_of(qoe: QoE, arms: Sequence[Arm], lat: np.ndarray, energy: np.ndarray) -> np.ndarray:
    return np.broadcast_to(qoe(S._figures(arms, lat, energy)), lat.shape)


def recommend(arms: Sequence[Arm], qoe: QoE, *, algo: str = "linucb", rounds: int = 2000, seed: int = 0,
              noise: float = 0.05, alpha: float = 0.5, predict_missing: bool = True,
              cpu_power_w: float = S.CPU_POWER_W) -> dict:
    """The recommendation per device present in the runs, with every candidate, as a JSON-able dict."""
    arms, notes = S.usable_arms(arms, qoe)
    specs, more = S.base_devices(arms, cpu_power_w=cpu_power_w, include_catalog=False)
    notes += more
    rng = np.random.default_rng(seed)
    devices, q_point, cands_of = [], [], []
    for spec in specs:
        cands = candidates(spec, arms, predict_missing)
        lat = np.array([c.latency_ms for c in cands])[None]
        energy = np.array([c.energy_mj for c in cands])[None]
        q = _qoe_of(qoe, [c.arm for c in cands], lat, energy)[0]
        if not np.isfinite(q).all():
            bad = cands[int(np.argmin(np.isfinite(q)))].arm.key
            raise SelectError(f"--qoe: not a finite number for {bad} on {spec.name} "
                              f"(division by zero or log of a non-positive number?)")
        f_lat = np.exp(rng.normal(0, [c.latency_sd for c in cands], (SAMPLES, len(cands))))
        f_e = np.exp(rng.normal(0, [c.energy_sd for c in cands], (SAMPLES, len(cands))))
        qs = _qoe_of(qoe, [c.arm for c in cands], lat * f_lat, energy * f_e)
        p_best = np.bincount(qs.argmax(axis=1), minlength=len(cands)) / SAMPLES
        order = np.argsort(-q, kind="stable")
        best, second = int(order[0]), (int(order[1]) if len(order) > 1 else None)
        c = cands[best]
        devices.append({
            "device": spec.name, "kind": spec.kind, "described_by": spec.source,
            "recommended": c.arm.key, "expected_qoe": round(float(q[best]), 5),
            "confidence": round(float(p_best[best]), 4),
            "runner_up": cands[second].arm.key if second is not None else None,
            "margin": round(float(q[best] - q[second]), 5) if second is not None else None,
            "accuracy": c.arm.accuracy, "latency_ms": round(c.latency_ms, 6),
            "latency_provenance": c.latency_provenance, "energy_mj": round(c.energy_mj, 6),
            "energy_provenance": c.energy_provenance, "candidates": len(cands),
            "all": [{"variant": x.arm.key, "expected_qoe": round(float(q[i]), 5), "p_best": round(float(p_best[i]), 4),
                     "accuracy": x.arm.accuracy, "latency_ms": round(x.latency_ms, 6), "energy_mj": round(x.energy_mj, 6),
                     "latency_provenance": x.latency_provenance, "energy_provenance": x.energy_provenance,
                     "from": x.source} for i, x in enumerate(cands)]})
        q_point.append(q)
        cands_of.append(cands)
    if algo and rounds > 0:
        _replay(devices, cands_of, q_point, arms, qoe, algo, rounds, seed, noise, alpha)
    return {"qoe": {"expr": qoe.expr, "params": dict(qoe.params)}, "algo": algo, "rounds": rounds,
            "noise_sd": noise, "devices": devices, "notes": notes}


def _replay(devices: list[dict], cands_of: list[list[Candidate]], q_point: list[np.ndarray], arms: Sequence[Arm],
            qoe: QoE, algo: str, rounds: int, seed: int, noise: float, alpha: float) -> None:
    """The chosen bandit online on the run's devices: a device per round (uniform), reward = QoE + noise; its pick
    per device over the last fifth of the rounds, and the regret it paid."""
    from bench.select import bandits as B

    keys = [a.key for a in arms]
    N, K = len(devices), len(arms)
    q, lat, energy = np.full((N, K), np.nan), np.ones((N, K)), np.ones((N, K))
    for i, cands in enumerate(cands_of):
        for j, c in enumerate(cands):
            k = keys.index(c.arm.key)
            q[i, k], lat[i, k], energy[i, k] = q_point[i][j], c.latency_ms, c.energy_mj
    absent = np.isnan(q)
    q = np.where(absent, np.nanmin(q, axis=1, keepdims=True) - 1.0, q)  # no figures there: a sure loser
    specs = [S.DeviceSpec(name=d["device"], kind=d["kind"], base=d["device"], source=d["described_by"],
                          peak_ops={}, bandwidth_bytes_s=math.inf, active_w={}) for d in devices]
    params = {k: np.full((N, 1), v) for k, v in qoe.params.items()}
    pop = S.Population(specs, list(arms), {"latency_ms": lat, "energy_mj": energy}, {}, params, q, q, [], {})
    X = S.features(pop, qoe)
    X[absent] = 0.0
    rng = np.random.default_rng(seed + 1000)
    seq = rng.integers(N, size=rounds)
    policy = B.make(algo, N, K, X.shape[-1], seed=seed + 2, alpha=alpha)
    picks, regret = S.run_policy(policy, seq, X, q, rng.normal(0, noise, rounds))
    _, mode = S.agreement(picks, seq, q.argmax(axis=1), max(1, rounds // 5))
    for i, d in enumerate(devices):
        d[f"{algo}_pick"] = keys[mode[i]] if i in mode else None
        d[f"{algo}_regret"] = round(float(regret[seq == i].sum()), 4)


COLUMNS = ["device", "kind", "recommended", "expected_qoe", "confidence", "runner_up", "margin", "accuracy",
           "latency_ms", "latency_provenance", "energy_mj", "energy_provenance", "candidates"]


def table(result: dict) -> pd.DataFrame:
    cols = COLUMNS + [c for c in (f"{result['algo']}_pick", f"{result['algo']}_regret") if result["devices"]
                      and c in result["devices"][0]]
    return pd.DataFrame([{c: d.get(c) for c in cols} for d in result["devices"]], columns=cols)


def render(result: dict, fmt: str) -> str:
    """md, csv or json text of a recommendation."""
    if fmt == "json":
        return json.dumps(result, indent=2, default=str) + "\n"
    df = table(result)
    if fmt == "csv":
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        return buf.getvalue()
    if fmt != "md":
        raise SelectError(f"--format: expected md, csv or json, got '{fmt}'")
    lines = [f"QoE: `{result['qoe']['expr']}` with "
             + ", ".join(f"{k} = {v:g}" for k, v in result["qoe"]["params"].items()), "",
             "| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for r in df.to_dict("records"):
        lines.append("| " + " | ".join(_cell(r[c]) for c in df.columns) + " |")
    lines += ["", "confidence: probability the variant is the best given the figures' uncertainty (measured: 95% CI;"
              f" modeled: {MODEL_ERROR:.0%} relative; {S.PROVENANCE}: {OWN_MODEL_ERROR:.0%}); accuracy taken as exact."]
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")
