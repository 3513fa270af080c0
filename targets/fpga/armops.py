"""The work a Relax module leaves to the ARM cores, op by op: FLOPs and bytes moved, read from the IR.

Used by the FPGA targets' latency model (targets/fpga/latency.py: a roofline per op). Calls to the
accelerator (`call_dps_packed` to jb_fpga.*) are excluded; reshapes are free (no data moves).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from targets.fpga.latency import ArmOp

FREE = ("relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten")


def _nbytes(ty) -> int:
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        return int(np.prod([int(d) for d in ty.shape])) * tvm.DataType(ty.dtype).bits // 8
    if isinstance(ty, relax.TupleType):
        return sum(_nbytes(f) for f in ty.fields)
    return 0


def _numel(ty) -> int:
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        return int(np.prod([int(d) for d in ty.shape]))
    return 0


def arm_ops(mod: tvm.IRModule) -> list[ArmOp]:
    """One ArmOp per binding of `main` that computes on the ARM: the shared conv kernel (2 x its MACs, read
    from the shapes of its weight table), conv2d / matmul left to TVM (2 x dense MACs), anything else one
    FLOP per output element; bytes = tensors read + written."""
    ops = []
    for blk in mod["main"].body.blocks:
        for b in blk.bindings:
            v = b.value
            if not isinstance(v, relax.Call) or not isinstance(v.op, tvm.ir.Op):
                continue
            name = v.op.name
            if name == "relax.call_dps_packed" or name in FREE:
                continue
            args = v.args[1].fields if name == "relax.call_tir" else v.args
            moved = sum(_nbytes(a.ty) for a in args if isinstance(a, relax.Expr)) + _nbytes(b.var.ty)
            out = _numel(b.var.ty)
            if name == "relax.call_tir" and v.args[0].name_hint.startswith("jb_conv"):
                nb, kmax, br = (int(d) for d in v.args[1].fields[1].ty.shape)
                n, _, ho, wo = (int(d) for d in b.var.ty.shape)
                flops, label = 2 * n * ho * wo * nb * br * kmax, "conv (joulebench kernel)"
            elif name == "relax.nn.conv2d":
                w = [int(d) for d in v.args[1].ty.shape]
                flops, label = 2 * out * w[1] * w[2] * w[3], "conv2d"
            elif name == "relax.matmul":
                flops, label = 2 * out * int(v.args[0].ty.shape[-1]), "matmul"
            else:
                flops, label = out, name.removeprefix("relax.")
                if name == "relax.call_tir":
                    label = v.args[0].name_hint
            ops.append(ArmOp(label, float(flops), float(moved)))
    return ops
