"""Precision conversions of a Relax module, shared by the GPU targets (fp16 compute on Adreno/Mali)."""

from __future__ import annotations

import tvm
from tvm import relax


def to_fp16(mod: tvm.IRModule) -> tvm.IRModule:
    """fp16 inputs, weights and accumulation for conv/matmul (what a mobile GPU's fp16 build runs);
    the module's inputs and outputs stay fp32 so the same verification input and reference apply."""
    return relax.transform.ToMixedPrecision(out_dtype="float16")(mod)


def device_sources(executable) -> dict[str, str]:
    """Generated device-kernel source per module kind (e.g. 'opencl'), found anywhere in the import tree."""
    out: dict[str, str] = {}

    def walk(m) -> None:
        if m.kind not in ("llvm", "relax.VMExecutable", "c", "static_library"):
            try:
                out[m.kind] = out.get(m.kind, "") + m.inspect_source()
            except Exception:  # some runtime modules have no printable source
                pass
        for child in m.imports:
            walk(child)

    walk(executable.mod)
    return out
