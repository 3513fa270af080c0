"""mobile-gpu@1: modeled latency and energy of an `android-gpu` build on a catalog mobile GPU, and the
`android-gpu-model` target that reports them.

Per device kernel k (counted from the build's scheduled TIR by targets/android/kernelstats.py), launched n_k times:

    t_k = max(F_k / (peak(dtype_k) * eta_c[family]),  B_k / (BW * eta_m))  +  t_launch[family]
    t   = sum_k n_k * t_k

F_k = FLOPs, B_k = bytes of the global buffers it reads and writes, peak = the GPU's fp16 or fp32 peak (catalog),
BW = its DRAM peak (no memory roof where the catalog has none). eta_m = 0.88 is measured (Chips and Cheese: the
Snapdragon 855 reaches a touch below 30 of its 34.1 GB/s); eta_c and t_launch, one each per architecture family
(Adreno, Mali), are fitted to published TVM latencies (published.toml, log-error least squares). Energy per inference:

    E = P_idle * t + k_e * sum_k n_k e_op(dtype_k) F_k + e_bit * 8 * sum_k n_k B_k

i.e. a dynamic power proportional to compute and memory utilization. e_op and e_bit are Horowitz's (ISSCC 2014)
ALU and DRAM energies; k_e, the GPU's overhead per ALU operation (instruction issue, register files, caches), is
fitted to DeepEn2023's published mobile-GPU energies. P_idle comes from the catalog where a source publishes one
(none does yet) or the campaign option `idle_power_w`; without it the energy is the idle-subtracted one, which is
what the measured rows report as energy_mj_per_inf. See docs/models.md for the fit and its validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.api import Artifact, Estimate, Executor, Figure, Session, TargetError, Variant
from targets.android.kernelstats import STATS_VERSION
from targets.android.target import AndroidGPUTarget, GPUOptions
from targets.devices.catalog import CatalogError, MobileGpu, Published, load, load_published

MODEL = "mobile-gpu"
VERSION = 1
PROVENANCE = f"modeled:{MODEL}@{VERSION}"
DATA = Path(__file__).with_name("mobile_gpu_kernels.json")  # kernel stats of the validation builds (generated)

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm: fp32 multiply 3.7 pJ + add
# 0.9 pJ, fp16 multiply 1.1 pJ + add 0.4 pJ; per FLOP = per multiply-add / 2. Other dtypes take the fp32 value.
E_OP_J = {"float16": (1.1e-12 + 0.4e-12) / 2, "float32": (3.7e-12 + 0.9e-12) / 2}
# DRAM: 1.3-2.6 nJ per 64-bit access = 20-40 pJ/bit (same source); the low end, as fpga-power@1 uses.
E_DRAM_J_PER_BIT = 20e-12
# Chips and Cheese, "Inside the Snapdragon 855's iGPU": main memory "a touch below 30 GB/s" of the 34.1 GB/s peak.
ETA_MEMORY = 30.0 / 34.1
FAMILIES = ("adreno", "mali")
PROFILE_FAMILY = {"adreno": "adreno", "adreno-texture": "adreno", "mali": "mali"}


@dataclass(frozen=True)
class Kernel:
    flops: float  # per launch, executed (padded tiles included)
    bytes: float  # per launch
    launches: int  # per inference
    dtype: str = "float32"
    name: str = ""
    useful_flops: float | None = None  # per launch, outside output padding (None: = flops)

    @classmethod
    def from_stats(cls, k: dict) -> Kernel:
        return cls(flops=k["flops"], bytes=k["bytes_read"] + k["bytes_written"], launches=k["launches"],
                   dtype=k.get("dtype") or "float32", name=k.get("name", ""), useful_flops=k.get("flops_useful"))

    def work(self, useful: bool) -> float:
        return self.useful_flops if useful and self.useful_flops is not None else self.flops


@dataclass(frozen=True)
class Coefficients:
    eta_compute: dict[str, float]  # per family: share of the peak FLOP/s a kernel reaches
    launch_s: dict[str, float]  # per family, per kernel launch (dispatch, ramp-up and tail of a kernel)
    eta_memory: float = ETA_MEMORY  # share of the DRAM peak a memory-bound kernel reaches (measured, not fitted)
    energy_scale: float = 1.0  # k_e: GPU energy per FLOP over the ALU's own (Horowitz) energy
    fitted_on: tuple[str, ...] = ()
    energy_fitted_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Latency:
    seconds: float
    compute_s: float  # time of compute-bound kernels (roof part only)
    memory_s: float  # time of memory-bound kernels (roof part only)
    overhead_s: float
    launches: int
    flops: float
    bytes: float
    memory_roof: bool  # False where the catalog has no DRAM bandwidth for the GPU

    def assumptions(self, gpu: MobileGpu, c: Coefficients) -> dict:
        return {"gpu": gpu.key, "family": gpu.family, "peak_fp32_flops": gpu.compute.peak_fp32_flops,
                "peak_fp16_flops": gpu.compute.peak_fp16_flops, "fp16_peak_published": gpu.compute.fp16_gflops
                is not None, "dram_bytes_per_s": gpu.memory.peak_bytes_per_s, "memory_roof": self.memory_roof,
                "eta_compute": c.eta_compute[gpu.family], "eta_memory": c.eta_memory,
                "launch_s": c.launch_s[gpu.family],
                "kernel_launches": self.launches, "flops": self.flops, "dram_bytes": self.bytes,
                "compute_s": self.compute_s, "memory_s": self.memory_s, "overhead_s": self.overhead_s,
                "fitted_on": list(c.fitted_on)}


@dataclass(frozen=True)
class Energy:
    joules: float  # total per inference (idle share included when an idle power is known)
    active_joules: float  # above idle: compute + DRAM
    compute_j: float
    dram_j: float
    idle_w: float | None
    idle_source: str  # catalog | option | unknown

    def assumptions(self, c: Coefficients) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "joules"}, "energy_scale": c.energy_scale,
                "e_op_j": E_OP_J, "e_dram_j_per_bit": E_DRAM_J_PER_BIT, "energy_fitted_on": list(c.energy_fitted_on)}


def latency(kernels: list[Kernel], gpu: MobileGpu, c: Coefficients, useful: bool = False) -> Latency:
    """Roofline time per kernel plus a launch overhead, summed over the launches of one inference. `useful` times
    only the work outside output padding: how the model stands for a build tuned to the shapes (the published
    points); an artifact's own prediction times what its kernels execute."""
    eta = c.eta_compute[gpu.family]
    bw = gpu.memory.peak_bytes_per_s
    compute = memory = 0.0
    for k in kernels:
        t_c = k.work(useful) / (gpu.peak_flops(k.dtype) * eta)
        t_m = k.bytes / (bw * c.eta_memory) if bw else 0.0
        if t_c >= t_m:
            compute += k.launches * t_c
        else:
            memory += k.launches * t_m
    launches = sum(k.launches for k in kernels)
    overhead = launches * c.launch_s[gpu.family]
    return Latency(seconds=compute + memory + overhead, compute_s=compute, memory_s=memory, overhead_s=overhead,
                   launches=launches, flops=sum(k.work(useful) * k.launches for k in kernels),
                   bytes=sum(k.bytes * k.launches for k in kernels), memory_roof=bool(bw))


def energy(kernels: list[Kernel], gpu: MobileGpu, lat: Latency, c: Coefficients,
           idle_w: float | None = None, useful: bool = False) -> Energy:
    """Idle power over the inference plus dynamic energy per FLOP and per DRAM bit. `idle_w` (a measured idle)
    overrides the catalog's; with neither, the result is the idle-subtracted energy."""
    source = "option" if idle_w is not None else "unknown"
    if idle_w is None and gpu.power.idle_w is not None:
        idle_w, source = gpu.power.idle_w.value, "catalog"
    compute_j = c.energy_scale * sum(k.launches * k.work(useful) * E_OP_J.get(k.dtype, E_OP_J["float32"])
                                     for k in kernels)
    dram_j = E_DRAM_J_PER_BIT * 8 * lat.bytes
    active = compute_j + dram_j
    return Energy(joules=active + (idle_w or 0.0) * lat.seconds, active_joules=active, compute_j=compute_j,
                  dram_j=dram_j, idle_w=idle_w, idle_source=source)


# ------------------------------------------------------------------------------------------------------ fitting
@dataclass(frozen=True)
class Point:
    """A published latency with the kernels of the joulebench build that stands for it."""

    key: str
    gpu: MobileGpu
    kernels: tuple[Kernel, ...]
    measured_s: float
    network: str
    precision: str


def build_key(network: str, profile: str, precision: str, lowering: str) -> str:
    return f"{network}/{profile}/{precision}/{lowering}"


def compact(stats: list[dict]) -> list[list]:
    """Kernel stats as [flops, useful flops, bytes, launches, dtype] rows, identical kernels merged (the data file's
    form)."""
    merged: dict[tuple, int] = {}
    for k in stats:
        if k["launches"]:
            key = (k["flops"], k["flops_useful"], k["bytes_read"] + k["bytes_written"], k.get("dtype") or "float32")
            merged[key] = merged.get(key, 0) + k["launches"]
    return [[f, u, b, n, d] for (f, u, b, d), n in sorted(merged.items(), key=lambda kv: (-kv[0][0], -kv[0][2]))]


def _kernels(rows: list[list]) -> tuple[Kernel, ...]:
    return tuple(Kernel(flops=f, useful_flops=u, bytes=b, launches=n, dtype=d) for f, u, b, n, d in rows)


def load_builds(path: Path = DATA) -> dict:
    if not path.is_file():
        raise TargetError(f"{path}: missing; generate it with: python -m bench.benchmarks.mobile_gpu_validation "
                          "--generate")
    return json.loads(path.read_text())["builds"]


def points(pub: Published | None = None, builds: dict | None = None) -> list[Point]:
    """The published mobile-GPU latency points with their builds' kernels."""
    pub = pub or load_published()
    builds = builds if builds is not None else load_builds()
    cat = load()
    out = []
    for key, p in pub.gpu_points.items():
        bk = build_key(p.network, p.profile, p.precision, p.lowering)
        if bk not in builds:
            raise TargetError(f"{DATA}: no kernel stats for build '{bk}' (point {key}); regenerate with --generate")
        ks = _kernels(builds[bk]["kernels"])
        out.append(Point(key, cat.gpu(p.gpu), ks, p.latency_ms.value / 1e3, p.network, p.precision))
    return out


def fit_latency(pts: list[Point]) -> Coefficients:
    """eta_c and t_launch of each family present, by least squares on log(predicted / measured); the published
    points stand for builds tuned to their shapes, so they are timed on their useful FLOPs."""
    from scipy.optimize import least_squares

    fams = [f for f in FAMILIES if any(p.gpu.family == f for p in pts)]

    def coeffs(x: np.ndarray) -> Coefficients:
        v = np.exp(x)
        eta = {f: math.nan for f in FAMILIES} | {f: float(v[i]) for i, f in enumerate(fams)}
        launch = {f: math.nan for f in FAMILIES} | {f: float(v[len(fams) + i]) for i, f in enumerate(fams)}
        return Coefficients(eta_compute=eta, launch_s=launch, fitted_on=tuple(p.key for p in pts))

    def residuals(x: np.ndarray) -> np.ndarray:
        c = coeffs(x)
        return np.array([math.log(latency(list(p.kernels), p.gpu, c, useful=True).seconds / p.measured_s)
                         for p in pts])

    n = len(fams)
    x0 = np.log([0.3] * n + [20e-6] * n)
    lo = np.log([1e-3] * n + [1e-7] * n)
    hi = np.log([1.0] * n + [1e-2] * n)  # an efficiency is at most 1
    return coeffs(least_squares(residuals, x0, bounds=(lo, hi)).x)


def range_center_mj(r) -> float:
    """The geometric centre of a published [min, max] energy range (the ranges span variants ~6x apart)."""
    return math.sqrt(r.min_mj.value * r.max_mj.value)


def flops_scale(r, kernels: list[Kernel]) -> float:
    """The dense network's useful FLOPs over the published variants' average: the per-FLOP comparison's factor."""
    return sum(k.work(True) * k.launches for k in kernels) / (r.avg_mflops.value * 1e6)


def fit_energy_scale(c: Coefficients, targets: list[tuple[str, list[Kernel], MobileGpu, float]]) -> Coefficients:
    """k_e such that the active energy matches each target (key, kernels, gpu, joules); geometric mean over them."""
    logs = []
    for key, ks, gpu, target_j in targets:
        lat = latency(ks, gpu, c, useful=True)
        e1 = energy(ks, gpu, lat, replace(c, energy_scale=1.0), useful=True)
        k = (target_j - e1.dram_j) / e1.compute_j  # k * compute + dram = target
        if k <= 0:
            raise ValueError(f"energy target of {key} is below the model's DRAM energy alone")
        logs.append(math.log(k))
    return replace(c, energy_scale=float(math.exp(np.mean(logs))), energy_fitted_on=tuple(t[0] for t in targets))


def energy_targets(pub: Published | None = None, builds: dict | None = None,
                   keys: tuple[str, ...] | None = None) -> list[tuple[str, list[Kernel], MobileGpu, float]]:
    """DeepEn2023 range centres, scaled per FLOP to the zoo's dense network, with the kernels of its fp32 build
    (texture profile on an Adreno) on the range's GPU."""
    pub = pub or load_published()
    builds = builds if builds is not None else load_builds()
    cat = load()
    out = []
    for key, r in pub.gpu_energy_ranges.items():
        if keys is not None and key not in keys:
            continue
        gpu = cat.gpu(r.gpu)
        bk = build_key(r.network, "adreno-texture" if gpu.family == "adreno" else "mali", r.precision, "tvm")
        if bk not in builds:
            raise TargetError(f"{DATA}: no kernel stats for build '{bk}' (energy range {key})")
        ks = list(_kernels(builds[bk]["kernels"]))
        out.append((key, ks, gpu, range_center_mj(r) * flops_scale(r, ks) / 1e3))
    return out


@lru_cache(maxsize=1)
def fitted() -> Coefficients:
    """The coefficients fitted to every published point (latency) and every DeepEn2023 range (energy)."""
    pub, builds = load_published(), load_builds()
    return fit_energy_scale(fit_latency(points(pub, builds)), energy_targets(pub, builds))


# ------------------------------------------------------------------------------------------------------ target
class ModelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu: str = Field("adreno-650", description="catalog mobile GPU, e.g. adreno-650, mali-g78-mp14")
    profile: Literal["adreno", "adreno-texture", "mali"] = "adreno"
    lowering: Literal["joulebench", "tvm"] = "joulebench"
    idle_power_w: float | None = Field(None, ge=0, description="measured idle power of the phone (W), if known")


def _gpu(name: str) -> MobileGpu:
    try:
        return load().gpu(name)
    except CatalogError as exc:
        raise TargetError(f"android-gpu-model: option 'gpu': {exc}") from None


class GPUModelExecutor(Executor):
    """Runs the variant's torch module for verification: the model predicts the GPU's speed, it does not compute on
    the GPU. `estimate` gives the modeled latency and energy of the artifact's kernels on the chosen GPU."""

    def __init__(self, artifact: Artifact, options: ModelOptions) -> None:
        self.variant, self.options = artifact.variant, options
        self.gpu = _gpu(options.gpu)
        self.kernels = [Kernel.from_stats(k) for k in artifact.manifest["kernel_stats"]]

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.variant.module(torch.from_numpy(x)).numpy()

    def estimate(self) -> Estimate:
        c = fitted()
        lat = latency(self.kernels, self.gpu, c)
        e = energy(self.kernels, self.gpu, lat, c, self.options.idle_power_w)
        lat_inputs = lat.assumptions(self.gpu, c) | {"profile": self.options.profile}
        e_inputs = e.assumptions(c)
        if e.idle_w is None:
            e_inputs["note"] = "no idle power published or given (option idle_power_w): energy is above idle only"
        return Estimate(
            latency_s=Figure(lat.seconds, PROVENANCE, lat_inputs),
            energy_j=Figure(e.joules, PROVENANCE, e_inputs),
            idle_power_w=e.idle_w if e.idle_w is not None else 0.0,
            details={"kernel_launches": Figure(lat.launches, PROVENANCE, {"counted_from": "scheduled TIR"}),
                     "dram_bytes": Figure(lat.bytes, PROVENANCE, {"counted_from": "scheduled TIR"})},
        )


class GPUModelSession(Session):
    def __init__(self, options: ModelOptions) -> None:
        self.options = options
        gpu = _gpu(options.gpu)
        self.device = f"modeled {gpu.name} ({gpu.soc})"

    def load(self, artifact: Artifact) -> Executor:
        if "kernel_stats" not in artifact.manifest:
            raise TargetError(f"{artifact.path}: no kernel_stats in the manifest; recompile with android-gpu-model")
        return GPUModelExecutor(artifact, self.options)


class AndroidGPUModelTarget(AndroidGPUTarget):
    """An android-gpu build (same compile, same kernels) whose latency and energy on a catalog mobile GPU are
    predicted by mobile-gpu@1 instead of measured on a phone."""

    name = "android-gpu-model"
    description = f"Android mobile GPU modeled by {PROVENANCE} (TVM OpenCL build, kernel roofline, no phone needed)"
    Options = ModelOptions
    figures = "modeled"

    def availability(self) -> tuple[bool, str]:
        return (True, "") if DATA.is_file() else (False, f"{DATA.name} missing (python -m "
                                                          "bench.benchmarks.mobile_gpu_validation --generate)")

    def version(self) -> str:
        return f"{super().version()}-kstats{STATS_VERSION}"

    def default_meters(self) -> list[str | dict]:
        return []

    def accepts(self, variant: Variant) -> str | None:
        return None if variant.module is not None else "android-gpu-model verifies with the torch module; this is ONNX"

    def compile(self, variant: Variant, options: ModelOptions, workdir: Path) -> dict:
        gpu = _gpu(options.gpu)
        if PROFILE_FAMILY[options.profile] != gpu.family:
            raise TargetError(f"android-gpu-model: profile '{options.profile}' builds {PROFILE_FAMILY[options.profile]}"
                              f" kernels but gpu '{gpu.key}' is a {gpu.family} GPU")
        manifest = super().compile(variant, GPUOptions(profile=options.profile, lowering=options.lowering), workdir)
        if "kernel_stats" not in manifest:
            raise TargetError("android-gpu-model: the build produced no OpenCL kernels to model")
        return {**manifest, "model": PROVENANCE, "gpu": gpu.key}

    def open(self, device: str | None, options: ModelOptions) -> Session:
        return GPUModelSession(options)
