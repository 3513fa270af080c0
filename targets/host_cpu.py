"""host-cpu: the machine running joulebench, through TVM's llvm backend tuned to this CPU."""

from __future__ import annotations

import glob
import os
import platform
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.api import DeviceSnapshot, Session, Target, TargetError, Variant


class HostCPUOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tune_trials: int = Field(0, ge=0, description="MetaSchedule trials in total (0: no tuning)")
    trials_per_task: int | None = Field(None, ge=1)
    mcpu: str | None = Field(None, description="LLVM CPU name; default: this machine's")
    threads: int | None = Field(None, ge=1, description="TVM runtime threads; default: all cores")
    lowering: Literal["joulebench", "tvm"] = Field(
        "joulebench", description="joulebench: shared conv/linear kernel that skips pruned columns; tvm: TVM's own")


def vector_lanes(target) -> int:
    """fp32 lanes of the target's widest vector register: the dense kernel's row-block (16 on AVX-512 made
    dense ResNet-18-CIFAR 1.9x faster than 8 here: bench/benchmarks/kernel_tiles.py)."""
    from tvm.target import codegen

    return 16 if codegen.target_has_features("avx512f", target) else 8


def has_vnni(target) -> bool:
    """AVX512-VNNI (vpdpbusd): dense 8-bit convs get the VNNI kernel."""
    from tvm.target import codegen

    return bool(codegen.target_has_features("avx512vnni", target))


def host_target(mcpu: str | None = None):
    import tvm

    cpu = mcpu or tvm.target.codegen.llvm_get_system_cpu()
    return tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": os.cpu_count() or 1})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_snapshot(root: str = "/") -> DeviceSnapshot:
    """CPU clocks (Hz), governors and thermal-zone temperatures (deg C) of the sysfs tree under `root`."""
    base = Path(root)
    freqs = {}
    for f in sorted(glob.glob(str(base / "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))):
        v = _read(f)
        if v and v.isdigit():
            freqs[Path(f).parts[-3]] = int(v) * 1e3  # sysfs reports kHz
    governors = sorted({g for f in glob.glob(str(base / "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"))
                        if (g := _read(f))})
    temps = {}
    for zone in sorted(glob.glob(str(base / "sys/class/thermal/thermal_zone*"))):
        t, kind = _read(f"{zone}/temp"), _read(f"{zone}/type") or Path(zone).name
        if t and t.lstrip("-").isdigit():
            temps[kind] = int(t) / 1000.0
    return DeviceSnapshot(cpu_hz=freqs, temps_c=temps, info={"governors": governors} if governors else {})


class HostSession(Session):
    """A session on this machine (every host-side target): its device name and CPU snapshot."""

    def __init__(self, target: str, device: str | None) -> None:
        if device not in (None, "host", "local"):
            raise TargetError(f"{target} runs on this machine only; got device '{device}'")
        self.device = f"host:{cpu_model()}"

    def snapshot(self) -> DeviceSnapshot:
        return cpu_snapshot()


def use_threads(n: int) -> None:
    """Run TVM's parallel loops on `n` threads, one per core. Left alone, TVM's x86 runtime assumes
    hyper-threading and takes half the cores: on this 2-core machine one thread, which cost dense
    ResNet-18-CIFAR half its speed. The pool may already exist (a build evaluates constants), so it
    is reconfigured, not only told through TVM_NUM_THREADS."""
    import tvm

    os.environ["TVM_NUM_THREADS"] = str(n)
    tvm.get_global_func("runtime.config_threadpool")(-2, n)  # -2: kSpecifyOneCorePerThread


class HostCPUSession(HostSession):
    def __init__(self, device: str | None, threads: int | None) -> None:
        import tvm

        super().__init__("host-cpu", device)
        use_threads(threads or len(os.sched_getaffinity(0)))
        self.dev = tvm.cpu()

    def load(self, artifact):
        import tvm

        from targets.tvm.vm import VMExecutor

        return VMExecutor(tvm.runtime.load_module(str(artifact.file("model.so"))), self.dev)


class HostCPUTarget(Target):
    name = "host-cpu"
    description = "this machine's CPU via TVM (llvm, -mcpu of this CPU); MetaSchedule tuning optional"
    Options = HostCPUOptions

    def default_meters(self) -> list[str | dict]:
        return ["rapl"]  # the host package's energy counter, where the machine exposes it

    def availability(self) -> tuple[bool, str]:
        try:
            import tvm

            if not tvm.runtime.enabled("llvm"):
                return False, "this TVM build has no LLVM backend"
        except ImportError as exc:
            return False, f"apache-tvm is not importable ({exc}); run `make venv`"
        return True, ""

    def version(self) -> str:
        import tvm

        from targets.tvm.lowering import LOWERING_VERSION

        return f"tvm-{tvm.__version__}-lowering{LOWERING_VERSION}"

    def compile(self, variant: Variant, options: HostCPUOptions, workdir: Path) -> dict:
        from targets.tvm.build import build, kernel_names
        from targets.tvm.importer import to_relax
        from targets.tvm.lowering import executed_precision, lower_variant

        target = host_target(options.mcpu)
        mod, lowered = lower_variant(to_relax(variant), variant, options.lowering, dense_br=vector_lanes(target),
                                     vnni=has_vnni(target))
        ex, tuning = build(mod, target, options.tune_trials, options.trials_per_task)
        try:
            ex.export_library(str(workdir / "model.so"))
        except Exception as exc:
            raise TargetError(f"exporting the host-cpu library failed (is a C compiler installed?): {exc}") from None
        return {"tvm_target": str(target), "kernels": kernel_names(ex), **tuning, **lowered,
                "executed": executed_precision(variant, lowered)}

    def open(self, device: str | None, options: HostCPUOptions) -> Session:
        return HostCPUSession(device, options.threads)
