"""Variant -> Relax IRModule, from the torch.export graph or the ONNX file, weights bound as constants."""

from __future__ import annotations

import tvm

from bench.api import TargetError, Variant


def to_relax(variant: Variant) -> tvm.IRModule:
    try:
        if variant.onnx_path is not None:
            import onnx
            from tvm.relax.frontend.onnx import from_onnx

            model = onnx.load(variant.onnx_path)
            inp = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}][0]
            return from_onnx(model, shape_dict={inp: list(variant.input_shape)}, keep_params_in_input=False)
        from tvm.relax.frontend.torch import from_exported_program

        return from_exported_program(variant.exported, keep_params_as_input=False)
    except TargetError:
        raise
    except Exception as exc:  # frontends raise assorted errors for unsupported operators
        raise TargetError(f"TVM cannot import {variant.model}: {str(exc).strip().splitlines()[-1][:300]}") from None
