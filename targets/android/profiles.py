"""Device profiles -> TVM targets. The host part is aarch64 Android (what the phone's tvm_rpc loads)."""

from __future__ import annotations

import tvm

from bench.api import TargetError

ANDROID_HOST = {"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": ["+neon"]}

GPU_PROFILES = {
    "adreno": "qcom/adreno-opencl",
    "adreno-texture": "qcom/adreno-opencl-texture",
    "mali": {"kind": "opencl", "device": "mali"},
}

# CPU feature sets by core generation (what `-mattr` the phone's cores support)
CPU_PROFILES = {
    "armv8": ["+neon"],
    "armv8.2-dotprod": ["+neon", "+v8.2a", "+dotprod"],
    "armv8.2-dotprod-fp16": ["+neon", "+v8.2a", "+dotprod", "+fullfp16"],
}


def gpu_target(profile: str) -> tvm.target.Target:
    spec = GPU_PROFILES.get(profile)
    if spec is None:
        raise TargetError(f"unknown GPU profile '{profile}' (expected one of: {', '.join(GPU_PROFILES)})")
    return tvm.target.Target(spec, host=ANDROID_HOST)


def cpu_target(profile: str) -> tvm.target.Target:
    """`host` compiles for this machine instead: the loopback stand-in for a phone (tests, dry runs)."""
    if profile == "host":
        from targets.host_cpu import host_target

        return host_target()
    attrs = CPU_PROFILES.get(profile)
    if attrs is None:
        raise TargetError(f"unknown CPU profile '{profile}' (expected one of: host, {', '.join(CPU_PROFILES)})")
    return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": attrs})
