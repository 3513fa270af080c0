"""Workaround for TVM 0.27's Adreno texture pipeline, which fails ("Divide by zero") on every depthwise
conv2d: rewrite each one as pad + kh*kw strided slices, each scaled by its per-channel tap and summed.
Same arithmetic, element-wise operators only, which the texture pipeline handles."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant


def _is_depthwise(call) -> bool:
    if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d"):
        return False
    a = call.attrs
    w = call.args[1]
    return (isinstance(w, Constant) and int(a.groups) > 1 and int(w.ty.shape[1]) == 1
            and int(a.groups) == int(w.ty.shape[0]) and all(int(d) == 1 for d in a.dilation)
            and a.data_layout == "NCHW")


def depthwise_to_elementwise(mod: tvm.IRModule) -> tuple[tvm.IRModule, int, int]:
    """(module, convs rewritten, their MACs: the IR MAC count no longer sees them as convs)."""
    rewritten = macs = 0

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_call_(self, call):
            nonlocal rewritten, macs
            call = super().visit_call_(call)
            if not _is_depthwise(call):
                return call
            rewritten += 1
            w = call.args[1].value.numpy()  # [C, 1, kh, kw]
            c, _, kh, kw = w.shape
            sh, sw = (int(s) for s in call.attrs.strides)
            p = [int(v) for v in call.attrs.padding]
            top, left, bottom, right = p if len(p) == 4 else (p[0], p[1], p[0], p[1])
            x = self.builder_.emit(relax.op.nn.pad(call.args[0], [0, 0, 0, 0, top, bottom, left, right]))
            _, _, hp, wp = (int(d) for d in x.ty.shape)
            ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
            macs += int(x.ty.shape[0]) * c * ho * wo * kh * kw
            acc = None
            for i in range(kh):
                for j in range(kw):
                    tap = self.builder_.emit(relax.op.strided_slice(
                        x, axes=[2, 3], begin=[i, j], end=[i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1],
                        strides=[sh, sw]))
                    scale = relax.const(np.ascontiguousarray(w[:, 0, i, j].reshape(1, c, 1, 1)).astype(w.dtype))
                    term = self.builder_.emit(relax.op.multiply(tap, scale))
                    acc = term if acc is None else self.builder_.emit(relax.op.add(acc, term))
            return acc

    rw = Rewriter(mod)
    main = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out["main"] = main
    return out, rewritten, macs
