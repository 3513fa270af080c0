"""android-gpu and android-cpu: compile here (always), run on a phone when one is given."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from bench.api import NotRunnable, Session, Target, TargetError, Variant
from targets.android.profiles import CPU_PROFILES, GPU_PROFILES, cpu_target, gpu_target
from targets.android.remote import DeviceOptions, RemoteSession, ndk_compiler


class GPUOptions(DeviceOptions):
    profile: Literal["adreno", "adreno-texture", "mali"] = "adreno"
    lowering: Literal["joulebench", "tvm"] = "joulebench"


class CPUOptions(DeviceOptions):
    profile: str = Field("armv8.2-dotprod", description=f"one of host, {', '.join(CPU_PROFILES)}")
    lowering: Literal["joulebench", "tvm"] = "joulebench"


def opencl_kernels(source: str) -> list[dict]:
    """Kernel names and source sizes (bytes) from generated OpenCL C."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"__kernel\s+void\s+(\w+)\s*\(", source)]
    ends = [s for s, _ in starts[1:]] + [len(source)]
    return [{"name": name, "bytes": end - start} for (start, name), end in zip(starts, ends, strict=True)]


class _AndroidTarget(Target):
    device_kind: str  # opencl | cpu

    def availability(self) -> tuple[bool, str]:
        ndk = ndk_compiler()
        return True, "" if ndk else "compiles here; to run on a phone set TVM_NDK_CC or ANDROID_NDK_HOME"

    def version(self) -> str:
        import tvm

        from targets.tvm.lowering import LOWERING_VERSION

        return f"tvm-{tvm.__version__}-lowering{LOWERING_VERSION}-ndk:{ndk_compiler() or 'none'}"

    def default_meters(self) -> list[str | dict]:
        return [{"name": "android-battery"}]

    def tvm_target(self, options):
        raise NotImplementedError

    def preflight(self, options, devices: list[str], compressions: list = ()) -> None:
        """A phone to run on needs the tvm_rpc binary pushed to it: say so before hours of compiling."""
        fp16 = [c.label for c in compressions if c.precision == "fp16"]
        if getattr(options, "profile", "") == "adreno-texture" and fp16:
            raise TargetError(f"{self.name}: profile 'adreno-texture' cannot build fp16 variants ({fp16[0]}): TVM "
                              "0.27's texture pipeline fails on fp16 conv2d ('Inconsistent buffers' in FuseTIR); "
                              "use profile 'adreno' for fp16, in its own target entry")
        if devices and not (options.tvm_rpc and Path(options.tvm_rpc).is_file()):
            raise TargetError(f"{self.name}: option tvm_rpc must name the tvm_rpc binary built for the phone "
                              f"(got {options.tvm_rpc!r}) to run on {devices[0]}; see README: Run on your phone")

    def _lower(self, mod, variant: Variant, options) -> tuple[object, dict]:
        from targets.tvm.lowering import ir_macs, lower_variant
        from targets.tvm.precision import to_fp16

        gpu = self.device_kind == "opencl"
        if gpu and variant.precision == "fp16":
            # the shared kernel is fp32/int8: fp16 variants take TVM's own fp16 operators (dense work)
            mod = to_fp16(mod)
            return mod, {"lowering": "tvm (fp16)", "macs_effective": ir_macs(mod)}
        if getattr(options, "profile", "") == "adreno-texture":
            from targets.android.texture import depthwise_to_elementwise

            mod, n_dw, dw_macs = depthwise_to_elementwise(mod)
            note = ("adreno-texture: TVM's texture pipeline takes only its own operators, so compressed layers "
                    "compile dense" + (f"; {n_dw} depthwise convs rewritten as element-wise taps (TVM 0.27 "
                                       "fails on depthwise conv2d there)" if n_dw else ""))
            return mod, {"lowering": "tvm", "macs_effective": ir_macs(mod) + dw_macs, "lowering_note": note}
        if options.lowering == "tvm":
            return mod, {"lowering": "tvm", "macs_effective": ir_macs(mod)}
        return lower_variant(mod, variant, gpu=gpu)

    def compile(self, variant: Variant, options, workdir: Path) -> dict:
        from targets.android.kernelstats import capture, kernel_stats
        from targets.tvm.build import build, kernel_names
        from targets.tvm.importer import to_relax
        from targets.tvm.lowering import executed_precision
        from targets.tvm.precision import device_sources

        target = self.tvm_target(options)
        mod, lowered = self._lower(to_relax(variant), variant, options)
        with capture() as scheduled:  # the scheduled TIR the build generates code from, for per-kernel stats
            ex, _ = build(mod, target)
        ndk = ndk_compiler()
        host_build = getattr(options, "profile", "") == "host"
        if host_build:
            ex.export_library(str(workdir / "model.so"))
        elif ndk:
            from tvm.support import ndk as tvm_ndk

            os.environ.setdefault("TVM_NDK_CC", ndk)
            ex.export_library(str(workdir / "model.so"), fcompile=tvm_ndk.create_shared)
        else:
            ex.export_library(str(workdir / "model.tar"))  # objects only: link later with the NDK
        sources = device_sources(ex)
        manifest = {"tvm_target": str(target), "profile": getattr(options, "profile", None),
                    "loadable": host_build or bool(ndk), "ndk": ndk, **lowered,
                    "executed": executed_precision(variant, lowered)}
        if "opencl" in sources:
            (workdir / "kernels.cl").write_text(sources["opencl"])
            manifest["kernels"] = opencl_kernels(sources["opencl"])
            manifest["opencl_source_bytes"] = len(sources["opencl"])
            if scheduled.module is not None:
                manifest.update(kernel_stats(scheduled.module))
        else:
            manifest["kernels"] = [{"name": k} for k in kernel_names(ex)]
        return manifest

    def open(self, device: str | None, options) -> Session:
        if device is None:
            raise NotRunnable("compiled, not run: no device given (device = 'adb:SERIAL', 'tcp:HOST' or 'usb')")
        return RemoteSession(device, options, self.device_kind)


class AndroidGPUTarget(_AndroidTarget):
    name = "android-gpu"
    description = f"Android mobile GPU via TVM OpenCL ({', '.join(GPU_PROFILES)}), run over adb + TVM RPC"
    Options = GPUOptions
    device_kind = "opencl"

    def tvm_target(self, options: GPUOptions):
        return gpu_target(options.profile)


class AndroidCPUTarget(_AndroidTarget):
    name = "android-cpu"
    description = "Android CPU via TVM llvm aarch64 (NEON/dotprod by profile), run over adb + TVM RPC"
    Options = CPUOptions
    device_kind = "cpu"

    def tvm_target(self, options: CPUOptions):
        return cpu_target(options.profile)
