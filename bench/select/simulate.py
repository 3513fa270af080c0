"""Device model, simulated device/user population and the regret comparison of `joulebench select --simulate`.

Device model `modeled:select-roofline@1` (docs/select.md gives every formula and assumption): a variant's
latency on a device is a roofline of its executed MACs and weight bytes against the device's peak rate for the
precision it runs in, plus a fixed per-inference overhead; its energy is active power x latency (+ DDR energy on
FPGA boards). Precision support decides the rate: an FPGA board runs 8-bit on DSPs (2 MACs per DSP) and 1/2/4-bit
weights on LUTs as well, 32-bit variants on its ARM cores; a mobile GPU runs every quantized variant at fp16
(nothing below fp16); a host-like CPU runs what the rows measured. Where the runs hold a row of the variant on the
device, that row's figures (measured / simulated / modeled, provenance kept) replace the model.

Population: devices drawn from the catalog (kinds fpga-board and mobile-gpu) and host-like devices described by
the run rows, each with seeded perturbations of peak compute, bandwidth and power (which the device declares: its
context). The truth departs from the model by a hidden systematic bias per (device kind, execution path) and a
hidden per-(device, variant) factor; users set their own deadline and energy scale. Rewards are QoE + Gaussian
noise; regret is the oracle's expected QoE minus the chosen variant's, accumulated over rounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.select import Arm, Observation, SelectError
from bench.select import bandits as B
from bench.select.qoe import QoE

MODEL = "select-roofline"
VERSION = 1
PROVENANCE = f"modeled:{MODEL}@{VERSION}"

# ---------------------------------------------------------------------------------------------- assumptions
# None of these is a published figure: they are the model's stated assumptions (docs/select.md).
ETA_COMPUTE = 0.5  # share of a catalog peak rate a compiled variant reaches (the roofline itself would be 1)
DSP_INT8_MACS = 2  # 8-bit MACs per DSP slice per cycle (two products sharing one operand in a DSP48)
LUT_SHARE = 0.5  # share of a board's LUTs an accelerator can spend on low-bit MACs
ACT_BITS = 8  # activation bits of quantized variants (joulebench's default)
DESIGN_SHARE = 0.5  # share of every fabric resource the accelerator design occupies (fpga-power's F)
GPU_BLOCK_SKIP = 0.5  # share of the pruned work a GPU's block-sparse kernels skip (irregular access)
OVERHEAD_S = {"fpga-board": 50e-6, "mobile-gpu": 200e-6, "cpu": 0.0}  # driver / DMA setup / kernel launches
CPU_POWER_W = 10.0  # active power of a host-like CPU whose rows carry no energy figure


def _memory_efficiency() -> float:
    from targets.fpga.latency import DDR_EFFICIENCY  # UG585's ~75 % DDR controller efficiency

    return DDR_EFFICIENCY


PATHS = {"fpga-board": ("arm-fp32", "int16", "int8", "lowbit1", "lowbit2", "lowbit4"),
         "mobile-gpu": ("fp32", "fp16"), "cpu": ("fp32", "int8")}
KINDS = tuple(PATHS)


def path_of(arm: Arm, kind: str) -> str:
    """The execution path (precision and engine) of a variant on a device kind."""
    if kind == "mobile-gpu":  # a GPU does not compute below fp16: quantized weights are widened to fp16
        return "fp32" if arm.bits >= 32 and arm.precision != "fp16" else "fp16"
    if kind == "fpga-board":
        if arm.bits >= 32:
            return "arm-fp32"  # the accelerator is integer-only: float variants run on the ARM cores
        if arm.bits >= 16:
            return "int16"
        if arm.bits >= 8:
            return "int8"
        return f"lowbit{1 if arm.bits <= 1 else 2 if arm.bits <= 2 else 4}"
    return "fp32" if arm.bits >= 16 else "int8"


@dataclass(frozen=True)
class DeviceSpec:
    """What a device declares (its context) and what the model needs of it."""

    name: str
    kind: str  # fpga-board | mobile-gpu | cpu
    base: str  # the catalog key or the run device it is (or was perturbed from)
    source: str  # catalog:<key> | run:<target>@<device>
    peak_ops: Mapping[str, float]  # execution path -> ops/s (a MAC is 2 ops)
    bandwidth_bytes_s: float
    active_w: Mapping[str, float]  # execution path -> W above idle while it runs
    ddr_j_per_byte: float = 0.0
    overhead_s: float = 0.0
    eta: float = ETA_COMPUTE
    rows: Mapping[str, Observation] = field(default_factory=dict)  # arm key -> figures from the runs
    factors: tuple[float, float, float] = (1.0, 1.0, 1.0)  # compute, bandwidth, power vs the base
    power_assumed: bool = False

    def scaled(self, name: str, compute: float, bandwidth: float, power: float) -> DeviceSpec:
        c, m, p = self.factors
        return replace(self, name=name, peak_ops={k: v * compute for k, v in self.peak_ops.items()},
                       bandwidth_bytes_s=self.bandwidth_bytes_s * bandwidth,
                       active_w={k: v * power for k, v in self.active_w.items()},
                       factors=(c * compute, m * bandwidth, p * power))

    def context(self) -> dict:
        """The device features a user sees (peak compute per precision, bandwidth, power, precision support)."""
        def g(path: str) -> float | None:
            v = self.peak_ops.get(path)
            return round(v / 1e9, 3) if v else None
        fp32 = "arm-fp32" if self.kind == "fpga-board" else "fp32"
        return {"kind": self.kind, "peak_fp32_gops": g(fp32), "peak_fp16_gops": g("fp16"),
                "peak_int8_gops": g("int8"), "peak_lowbit_gops": g("lowbit2"),
                "bandwidth_gbps": round(self.bandwidth_bytes_s / 1e9, 3) if math.isfinite(self.bandwidth_bytes_s)
                else None, "active_w": round(float(np.median(list(self.active_w.values()))), 3),
                "precisions": [p for p in PATHS[self.kind] if p in self.peak_ops],
                "lowest_compute_bits": {"fpga-board": 1, "mobile-gpu": 16, "cpu": 8}[self.kind]}


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    energy_mj: float
    path: str
    bound: str  # compute | memory | row
    latency_provenance: str
    energy_provenance: str


def predict(arm: Arm, dev: DeviceSpec) -> Prediction:
    """The variant's latency and energy per inference on the device: a row of the runs if there is one
    (scaled by the device's compute and power factors), else the roofline."""
    path = path_of(arm, dev.kind)
    c, _, p = dev.factors
    obs = dev.rows.get(arm.key)
    if obs is not None:
        lat = obs.latency_ms / c
        if obs.energy_mj is not None:
            return Prediction(lat, obs.energy_mj * p / c, path, "row", obs.latency_provenance,
                              obs.energy_provenance or "")
        w = dev.active_w[path]
        return Prediction(lat, w * lat, path, "row", obs.latency_provenance,
                          f"{PROVENANCE} (active power {w:.3g} W{', assumed' if dev.power_assumed else ''})")
    if dev.kind == "mobile-gpu":
        skip = GPU_BLOCK_SKIP if arm.scheme == "block" else 0.0
        macs = arm.macs_dense * (1.0 - skip * arm.sparsity)
    else:  # joulebench's CPU and FPGA kernels skip pruned blocks: the masked MACs are the work
        macs = arm.macs_effective
    t_c = 2.0 * macs / (dev.peak_ops[path] * dev.eta)
    t_m = arm.weight_bytes / (dev.bandwidth_bytes_s * _memory_efficiency())
    t = dev.overhead_s + max(t_c, t_m)
    energy = dev.active_w[path] * t + dev.ddr_j_per_byte * arm.weight_bytes
    return Prediction(t * 1e3, energy * 1e3, path, "memory" if t_m > t_c else "compute", PROVENANCE, PROVENANCE)


# ------------------------------------------------------------------------------------------ device specs
def fpga_spec(board) -> DeviceSpec | None:
    """A catalog FPGA board: fpga-power@1's fitted coefficients for power, DSP/LUT counts for compute."""
    from targets.fpga.power import F_REF_HZ, Resources, fitted

    f = board.pl.default_clock_mhz.value * 1e6
    dsp, lut = board.part.dsp.value, board.part.lut.value
    per_core = board.cpu.peak_fp32_flops_per_core
    if per_core is None:
        return None
    cores = board.cpu.cores.value
    int8 = 2 * f * dsp * DSP_INT8_MACS
    peak = {"arm-fp32": per_core * cores, "int16": 2 * f * dsp, "int8": int8}
    peak.update({f"lowbit{w}": int8 + 2 * f * lut * LUT_SHARE / (ACT_BITS * w) for w in (1, 2, 4)})
    co = fitted()
    part = board.part
    share = Resources(lut=DESIGN_SHARE * part.lut.value, ff=DESIGN_SHARE * part.ff.value,
                      dsp=DESIGN_SHARE * part.dsp.value, bram36=DESIGN_SHARE * part.bram36.value,
                      uram=DESIGN_SHARE * part.uram.value).fabric_share()
    p_pl = co.k_pl_w * (f / F_REF_HZ) * share
    active = {k: p_pl for k in peak} | {"arm-fp32": co.p_arm_w * cores}
    return DeviceSpec(name=board.key, kind="fpga-board", base=board.key, source=f"catalog:{board.key}",
                      peak_ops=peak, bandwidth_bytes_s=board.memory.peak_bytes_per_s, active_w=active,
                      ddr_j_per_byte=co.e_ddr_j_per_bit * 8, overhead_s=OVERHEAD_S["fpga-board"])


def _flatten(obj, prefix: str = "") -> dict[str, float]:
    """Numbers of a catalog entry by dotted key; a sourced table {value, source} counts as its value."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        if "value" in obj and isinstance(obj["value"], int | float) and not isinstance(obj["value"], bool):
            out[prefix] = float(obj["value"])
        else:
            for k, v in obj.items():
                out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix] = float(obj)
    return out


def _rate(flat: dict[str, float], precision: str) -> float | None:
    """Peak ops/s of a precision from keys like `compute.fp16_gflops` or `peak_fp32_tflops`."""
    for key, v in flat.items():
        k = key.lower()
        if precision in k and "flop" in k:
            return v * (1e12 if "tflop" in k else 1e9 if "gflop" in k else 1.0)
    return None


GPU_POWER_W = 3.0  # active power of a mobile GPU whose catalog entry has no load power (assumed)


def gpu_spec(dev, gpu_power_w: float = GPU_POWER_W) -> DeviceSpec | None:
    """A catalog mobile GPU: fp32 and fp16 peak FLOP/s, memory bandwidth (none: no memory roof), load power above
    idle (none: `gpu_power_w`, assumed). Read through the typed entry, else by key names (`*fp16*gflops*`,
    `*gbps*`, `*load*_w`), so an entry of another schema still works; None without an fp32 rate."""
    dump = dev.model_dump() if hasattr(dev, "model_dump") else dict(dev)
    flat = _flatten(dump)
    compute = getattr(dev, "compute", None)
    fp32 = getattr(compute, "peak_fp32_flops", None) or _rate(flat, "fp32")
    fp16 = getattr(compute, "peak_fp16_flops", None) or _rate(flat, "fp16") or fp32
    memory = getattr(dev, "memory", None)
    bw = getattr(memory, "peak_bytes_per_s", None) or next(
        (v * 1e9 for k, v in flat.items() if "gbps" in k.lower() or "bandwidth" in k.lower()), None)
    watts = [(k.lower(), v) for k, v in flat.items() if k.lower().endswith("_w")]
    power = next((v for p in ("load", "active", "typical", "tdp") for k, v in watts if p in k), None)
    if not fp32:
        return None
    key = getattr(dev, "key", None) or dump.get("key") or dump.get("name", "gpu")
    return DeviceSpec(name=key, kind="mobile-gpu", base=key, source=f"catalog:{key}",
                      peak_ops={"fp32": float(fp32), "fp16": float(fp16)},
                      bandwidth_bytes_s=float(bw) if bw else math.inf,
                      active_w=dict.fromkeys(("fp32", "fp16"), float(power or gpu_power_w)),
                      overhead_s=OVERHEAD_S["mobile-gpu"], power_assumed=power is None)


def derived_spec(device_key: str, target: str, pairs: Sequence[tuple[Arm, Observation]],
                 cpu_power_w: float = CPU_POWER_W) -> DeviceSpec:
    """A device the catalog does not describe (e.g. the host CPU), described by its rows: per execution path the
    median achieved rate 2 x MACs / latency (a path without rows gets the median of the others: no assumed
    gain), active power from measured energy / latency where the rows have it, else `cpu_power_w` (assumed).
    Achieved rates already include memory effects, so bandwidth does not bind (infinite) and eta = 1."""
    low = target.lower()
    kind = "fpga-board" if "fpga" in low else "mobile-gpu" if "gpu" in low else "cpu"
    rates: dict[str, list[float]] = {}
    watts: list[float] = []
    for arm, obs in pairs:
        path = path_of(arm, kind)
        macs = arm.macs_dense if kind == "mobile-gpu" else arm.macs_effective
        rates.setdefault(path, []).append(2 * macs / (obs.latency_ms / 1e3))
        if obs.energy_mj is not None and obs.latency_ms > 0:
            watts.append(obs.energy_mj / obs.latency_ms)
    known = {p: float(np.median(v)) for p, v in rates.items()}
    fill = float(np.median(list(known.values())))
    peak = {p: known.get(p, fill) for p in PATHS[kind]}
    power = float(np.median(watts)) if watts else cpu_power_w
    return DeviceSpec(name=device_key, kind=kind, base=device_key, source=f"run:{device_key}", peak_ops=peak,
                      bandwidth_bytes_s=math.inf, active_w=dict.fromkeys(peak, power), overhead_s=0.0, eta=1.0,
                      rows={a.key: o for a, o in pairs}, power_assumed=not watts)


def base_devices(arms: Sequence[Arm], catalog=None, cpu_power_w: float = CPU_POWER_W,
                 include_catalog: bool = True) -> tuple[list[DeviceSpec], list[str]]:
    """The catalog's FPGA boards and mobile GPUs (with the runs' rows on them attached) and one device per
    (target, device) of the runs that is not in the catalog; plus notes on entries that could not be used."""
    from targets.devices import catalog as cat_mod

    notes: list[str] = []
    cat = catalog or cat_mod.load()
    specs: dict[str, DeviceSpec] = {}
    if include_catalog:
        for key, dev in cat.devices.items():
            kind = getattr(dev, "kind", None)
            spec = fpga_spec(dev) if kind == "fpga-board" else gpu_spec(dev) if kind == "mobile-gpu" else None
            if spec is None:
                if kind in ("fpga-board", "mobile-gpu"):
                    notes.append(f"catalog device {key}: no peak compute rate; left out")
                continue
            if spec.power_assumed and kind == "mobile-gpu":
                notes.append(f"catalog device {key}: no load power in the catalog; assumed {GPU_POWER_W:g} W active")
            specs[key] = spec
    attached: dict[str, dict[str, Observation]] = {}
    loose: dict[str, list[tuple[Arm, Observation]]] = {}
    for arm in arms:
        for obs in arm.observations:
            key = _catalog_key(cat, obs)
            if key is not None and (key in specs or not include_catalog):
                attached.setdefault(key, {}).setdefault(arm.key, obs)
            else:
                loose.setdefault(obs.device_key, []).append((arm, obs))
    for key, rows in attached.items():
        if key not in specs:  # recommending only: a catalog device the runs used
            dev = cat.get(key)
            spec = fpga_spec(dev) if dev.kind == "fpga-board" else gpu_spec(dev)
            if spec is None:
                continue
            specs[key] = spec
        specs[key] = replace(specs[key], rows=rows)
    for dkey, pairs in loose.items():
        seen: dict[str, tuple[Arm, Observation]] = {}
        for arm, obs in pairs:
            seen.setdefault(arm.key, (arm, obs))
        specs[dkey] = derived_spec(dkey, pairs[0][1].target, list(seen.values()), cpu_power_w)
    return list(specs.values()), notes


def _catalog_key(cat, obs: Observation) -> str | None:
    for name in (obs.board, obs.device, obs.device.split(":", 1)[-1]):
        if name:
            key = cat._resolve(name)
            if key is not None:
                return key
    return None


# ------------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimConfig:
    n_devices: int = 50
    rounds: int = 5000
    seed: int = 0
    noise: float = 0.05  # sd of the observation noise on the QoE
    compute_sd: float = 0.3  # lognormal sd of the declared perturbations (visible to the policies)
    bandwidth_sd: float = 0.2
    power_sd: float = 0.2
    bias_sd: float = 0.5  # hidden systematic model error per (kind, execution path), log-latency sd
    device_sd: float = 0.15  # hidden per-device factor (all its variants), log-latency sd
    idio_sd: float = 0.05  # hidden per-(device, variant) factor, log-latency sd
    users: str = "relative"  # relative: deadlines/energy scales drawn within what the variants span; fixed
    alpha: float = 0.5  # exploration scale of the learners (bandits.make)
    window: int = 1000  # last rounds over which a policy's pick per device is taken
    algos: tuple[str, ...] = B.LEARNERS
    cpu_power_w: float = CPU_POWER_W
    offset_ridge: float = 4.0  # prior precision of a device's own offset per variant (hybrid LinUCB)


@dataclass
class Population:
    devices: list[DeviceSpec]
    arms: list[Arm]
    prior: dict[str, np.ndarray]  # figures the policies can know: (N, K) latency_ms, energy_mj
    truth: dict[str, np.ndarray]  # the hidden realized figures
    params: dict[str, np.ndarray]  # per-user QoE parameters, (N, 1)
    q_prior: np.ndarray  # (N, K)
    q_true: np.ndarray  # (N, K) expected QoE
    sources: list[list[str]]  # (N, K): where each prior figure comes from
    bias: dict[str, float]


def _figures(arms: Sequence[Arm], lat: np.ndarray, energy: np.ndarray) -> dict[str, np.ndarray]:
    acc = np.array([a.accuracy if a.accuracy is not None else np.nan for a in arms])[None]
    return {"accuracy": acc, "latency_ms": lat, "energy_mj": energy, "power_w": energy / lat,
            "macs_m": np.array([a.macs_effective / 1e6 for a in arms])[None],
            "macs_dense_m": np.array([a.macs_dense / 1e6 for a in arms])[None],
            "params_m": np.array([a.params_kept / 1e6 for a in arms])[None],
            "sparsity": np.array([a.sparsity for a in arms])[None],
            "bits": np.array([float(a.bits) for a in arms])[None]}


def usable_arms(arms: Sequence[Arm], qoe: QoE) -> tuple[list[Arm], list[str]]:
    """Arms that have every figure the QoE reads (only accuracy can be missing: seeded models have none)."""
    if "accuracy" not in qoe.figures:
        return list(arms), []
    keep = [a for a in arms if a.accuracy is not None]
    if not keep:
        raise SelectError("the QoE uses accuracy but no variant in the runs has one (seeded weights): train the "
                          "models (pretrain_epochs) or use a --qoe without accuracy")
    dropped = [a.key for a in arms if a.accuracy is None]
    notes = [f"left out (no accuracy): {', '.join(dropped)}"] if dropped else []
    datasets = sorted({a.accuracy_dataset or "unknown" for a in keep})
    if len(datasets) > 1:
        notes.append(f"accuracies come from different datasets ({', '.join(datasets)}): the QoE compares them as is")
    return keep, notes


def build_population(arms: Sequence[Arm], qoe: QoE, cfg: SimConfig, catalog=None) -> tuple[Population, list[str]]:
    rng = np.random.default_rng(cfg.seed)
    arms, notes = usable_arms(arms, qoe)
    bases, more = base_devices(arms, catalog, cfg.cpu_power_w)
    notes += more
    if not bases:
        raise SelectError("no device to simulate: the catalog has no usable device and the runs describe none")
    if cfg.n_devices < 1 or cfg.rounds < 1:
        raise SelectError(f"--simulate and --rounds must be >= 1, got {cfg.n_devices} and {cfg.rounds}")
    by_kind = {k: [b for b in bases if b.kind == k] for k in KINDS}
    kinds = [k for k in KINDS if by_kind[k]]
    devices = []
    for i in range(cfg.n_devices):  # kinds in turn (equal shares), a random base device within the kind
        group = by_kind[kinds[i % len(kinds)]]
        b = group[int(rng.integers(len(group)))]
        c, m, p = np.exp(rng.normal(0, [cfg.compute_sd, cfg.bandwidth_sd, cfg.power_sd]))
        devices.append(b.scaled(f"{b.base}#{i}", float(c), float(m), float(p)))
    N, K = len(devices), len(arms)
    preds = [[predict(a, d) for a in arms] for d in devices]
    lat = np.array([[p.latency_ms for p in row] for row in preds])
    energy = np.array([[p.energy_mj for p in row] for row in preds])
    sources = [[p.latency_provenance if p.bound == "row" else PROVENANCE for p in row] for row in preds]
    keys = sorted({(d.kind, p.path) for d, row in zip(devices, preds, strict=True) for p in row})
    bias = {f"{k}:{path}": float(rng.normal(0, cfg.bias_sd)) for k, path in keys}
    b = np.array([[bias[f"{d.kind}:{p.path}"] for p in row] for d, row in zip(devices, preds, strict=True)])
    factor = np.exp(b + rng.normal(0, cfg.device_sd, (N, 1)) + rng.normal(0, cfg.idio_sd, (N, K)))
    true_lat, true_energy = lat * factor, energy * factor  # same active power for longer
    params = {k: np.full((N, 1), v) for k, v in qoe.params.items()}
    if cfg.users == "relative":
        # A user's deadline and energy scale are drawn log-uniformly over what the variants span on their device
        # (the deadline range widened by 1.5x each way): outside it the choice is trivial, as every variant meets
        # the deadline and energy does not matter.
        for name, fig, widen in (("deadline_ms", lat, 1.5), ("energy_ref_mj", energy, 1.0)):
            if name in params:
                lo, hi = np.log(fig.min(axis=1) / widen), np.log(fig.max(axis=1) * widen)
                params[name] = np.exp(rng.uniform(lo, hi))[:, None]
    elif cfg.users == "fixed":  # the command line's parameters, each user +-20 %
        for name in ("deadline_ms", "energy_ref_mj"):
            if name in params:
                params[name] = params[name] * np.exp(rng.normal(0, 0.2, (N, 1)))
    else:
        raise SelectError(f"--users: expected relative or fixed, got '{cfg.users}'")
    q_prior = np.broadcast_to(qoe(_figures(arms, lat, energy), params), (N, K)).copy()
    q_true = np.broadcast_to(qoe(_figures(arms, true_lat, true_energy), params), (N, K)).copy()
    if not np.isfinite(q_true).all():
        bad = np.argwhere(~np.isfinite(q_true))[0]
        raise SelectError(f"--qoe: not a finite number for {arms[bad[1]].key} on {devices[bad[0]].name} "
                          f"(division by zero or log of a non-positive number?)")
    pop = Population(devices, list(arms), {"latency_ms": lat, "energy_mj": energy},
                     {"latency_ms": true_lat, "energy_mj": true_energy}, params, q_prior, q_true, sources, bias)
    return pop, notes


SCALES = (1 / 3, 1 / 2, 1 / 1.5, 1.0, 1.5, 2.0, 3.0)


def features(pop: Population, qoe: QoE) -> np.ndarray:
    """(N, K, dim) context z of each variant on each device: a block [1, QoE(s x latency, s x energy) for s in
    SCALES] of the device model's prior figures (clipped to [-2, 2]) in the slot of the (device kind, execution
    path) the variant runs in there, zeros in the other slots, then a one-hot of the variant.

    The QoE of rescaled predictions lets a linear model say "on this kind, this path runs s times slower than the
    model predicts" whatever the QoE expression; slots let that differ per kind and path (an FPGA's LUT path, a
    GPU's fp16 path); the one-hot absorbs what is specific to a variant."""
    N, K = pop.q_prior.shape
    cols = [np.ones((N, K))]
    for s in SCALES:
        q = qoe(_figures(pop.arms, pop.prior["latency_ms"] * s, pop.prior["energy_mj"] * s), pop.params)
        cols.append(np.clip(np.broadcast_to(q, (N, K)), -2, 2))
    block = np.stack(cols, axis=-1)
    width = block.shape[-1]
    keys = [[(d.kind, path_of(a, d.kind)) for a in pop.arms] for d in pop.devices]
    slots = sorted({k for row in keys for k in row})
    X = np.zeros((N, K, width * len(slots) + K))
    for i in range(N):
        for j in range(K):
            at = width * slots.index(keys[i][j])
            X[i, j, at: at + width] = block[i, j]
            X[i, j, width * len(slots) + j] = 1.0
    return X


def _policy(name: str, pop: Population, dim: int, cfg: SimConfig):
    K = len(pop.arms)
    if name == "oracle":
        return B.FixedPolicy(name, pop.q_true.argmax(axis=1))
    if name == "common":  # one model for all devices: the best on average over the population
        return B.FixedPolicy(name, np.full(len(pop.devices), int(pop.q_true.mean(axis=0).argmax())))
    if name == "prior":  # the device model alone, no feedback
        return B.FixedPolicy(name, pop.q_prior.argmax(axis=1))
    if name == "random":
        return B.RandomPolicy(K, seed=cfg.seed + 1)
    return B.make(name, len(pop.devices), K, dim, seed=cfg.seed + 2, alpha=cfg.alpha, offset_ridge=cfg.offset_ridge)


def run_policy(policy, seq: np.ndarray, X: np.ndarray, q_true: np.ndarray, noise: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Play the rounds: device seq[t] arrives, the policy picks, sees QoE + noise[t]. Returns picks, regrets."""
    T = len(seq)
    picks = np.empty(T, dtype=int)
    best = q_true.max(axis=1)
    if isinstance(policy, B.FixedPolicy):  # nothing to learn: vectorized
        picks[:] = policy.arm_of_device[seq]
    else:
        for t in range(T):
            d = seq[t]
            a = policy.choose(d, X[d])
            picks[t] = a
            policy.update(d, a, X[d, a], q_true[d, a] + noise[t])
    return picks, best[seq] - q_true[seq, picks]


def agreement(picks: np.ndarray, seq: np.ndarray, oracle: np.ndarray, window: int) -> tuple[float, dict[int, int]]:
    """Per device, the arm picked most often in the last `window` rounds (ties: the lower index); the share of
    the devices seen there whose pick is the oracle's."""
    w = slice(max(0, len(seq) - window), None)
    mode: dict[int, int] = {}
    for d in np.unique(seq[w]):
        mode[int(d)] = int(np.bincount(picks[w][seq[w] == d]).argmax())
    agree = np.mean([mode[d] == oracle[d] for d in mode]) if mode else float("nan")
    return float(agree), mode


POLICIES = ("oracle", "common", "prior", "random")


def simulate(arms: Sequence[Arm], qoe: QoE, cfg: SimConfig, catalog=None,
             progress: Callable[[str, int, int], None] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Run every learner of cfg.algos and the fixed baselines on one population and one arrival/noise sequence
    (common random numbers: all policies face the same devices in the same order with the same noise)."""
    t0 = time.perf_counter()
    pop, notes = build_population(arms, qoe, cfg, catalog)
    X = features(pop, qoe)
    rng = np.random.default_rng(cfg.seed + 1000)
    seq = rng.integers(len(pop.devices), size=cfg.rounds)
    noise = rng.normal(0, cfg.noise, cfg.rounds)
    oracle = pop.q_true.argmax(axis=1)
    results: dict[str, dict] = {}
    curves: dict[str, np.ndarray] = {}
    picks_of: dict[str, dict[int, int]] = {}
    names = [*cfg.algos, *POLICIES]
    for i, name in enumerate(names):
        if progress:
            progress(name, i, len(names))
        start = time.perf_counter()
        policy = _policy(name, pop, X.shape[-1], cfg)
        picks, regret = run_policy(policy, seq, X, pop.q_true, noise)
        cum = np.cumsum(regret)
        agree, mode = agreement(picks, seq, oracle, cfg.window)
        w = slice(max(0, cfg.rounds - cfg.window), None)
        results[name] = {"cumulative_regret": round(float(cum[-1]), 4),
                         "mean_regret_last_window": round(float(regret[w].mean()), 5),
                         "oracle_agreement_last_window": round(agree, 4),
                         "runtime_s": round(time.perf_counter() - start, 3)}
        curves[name] = cum
        picks_of[name] = mode
    if progress:
        progress("done", len(names), len(names))
    common = int(pop.q_true.mean(axis=0).argmax())
    counts = np.bincount(oracle, minlength=len(pop.arms))
    devices = []
    for i, d in enumerate(pop.devices):
        devices.append({"name": d.name, "kind": d.kind, "base": d.base, "source": d.source,
                        "factors": {"compute": round(d.factors[0], 4), "bandwidth": round(d.factors[1], 4),
                                    "power": round(d.factors[2], 4)},
                        "context": d.context(),
                        "user": {k: round(float(v[i, 0]), 6) for k, v in pop.params.items()},
                        "oracle": pop.arms[oracle[i]].key, "oracle_qoe": round(float(pop.q_true[i].max()), 5),
                        "common_regret": round(float(pop.q_true[i].max() - pop.q_true[i, common]), 5),
                        "picks": {n: pop.arms[m[i]].key for n, m in picks_of.items() if i in m},
                        "figures": {a.key: {"latency_ms": round(float(pop.truth["latency_ms"][i, j]), 6),
                                            "energy_mj": round(float(pop.truth["energy_mj"][i, j]), 6),
                                            "prior_latency_ms": round(float(pop.prior["latency_ms"][i, j]), 6),
                                            "prior_energy_mj": round(float(pop.prior["energy_mj"][i, j]), 6),
                                            "prior_source": pop.sources[i][j],
                                            "path": path_of(a, d.kind), "qoe": round(float(pop.q_true[i, j]), 5)}
                                    for j, a in enumerate(pop.arms)}})
    lin = results.get("linucb", {}).get("cumulative_regret")
    com = results["common"]["cumulative_regret"]
    summary = {
        "qoe": {"expr": qoe.expr, "params": dict(qoe.params), "users": cfg.users},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "device_model": PROVENANCE,
        "arms": [{"key": a.key, **a.features(),
                  "observations": [{"target": o.target, "device": o.device, "latency_ms": o.latency_ms,
                                    "latency_kind": o.latency_kind, "latency_provenance": o.latency_provenance,
                                    "energy_mj": o.energy_mj, "energy_kind": o.energy_kind,
                                    "energy_provenance": o.energy_provenance, "run": o.run}
                                   for o in a.observations]} for a in pop.arms],
        "bases": sorted({d.source for d in pop.devices}),
        "hidden_bias": {k: round(v, 4) for k, v in pop.bias.items()},
        "oracle_arms": {pop.arms[j].key: int(c) for j, c in enumerate(counts) if c},
        "common_arm": pop.arms[common].key,
        "common_is_oracle_share": round(float(np.mean(oracle == common)), 4),
        "algorithms": results,
        "linucb_over_common": round(lin / com, 4) if lin is not None and com > 0 else None,
        "devices": devices,
        "notes": notes,
        "runtime_s": round(time.perf_counter() - t0, 2),
    }
    return summary, curves


# ------------------------------------------------------------------------------------------------- plots
def plot_regret(curves: Mapping[str, np.ndarray], out_dir: Path, title: str) -> list[Path]:
    """Cumulative regret per policy over rounds: all policies, and the learners against the common model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    T = len(next(iter(curves.values())))
    step = max(1, T // 500)
    idx = np.unique(np.r_[np.arange(0, T, step), T - 1])
    df = pd.concat([pd.DataFrame({"round": idx + 1, "cumulative regret": c[idx], "policy": n})
                    for n, c in curves.items() if n != "oracle"])
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sns.lineplot(df, x="round", y="cumulative regret", hue="policy", ax=axes[0])
    axes[0].set_title("all policies (oracle: 0 by definition)")
    focus = df[df["policy"].isin([*B.LEARNERS, "common", "prior"])]
    sns.lineplot(focus, x="round", y="cumulative regret", hue="policy", ax=axes[1])
    axes[1].set_title("learners vs one common model")
    for ax in axes:
        ax.set_xlabel("round t (device requests)")
        ax.set_ylabel("cumulative regret (QoE units, unitless)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths = [out_dir / "select-regret.png", out_dir / "select-regret.svg"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
