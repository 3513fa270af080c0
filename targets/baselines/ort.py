"""onnxruntime: ONNX Runtime's CPU execution provider, threads = cores (the bar a TVM build must beat)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.api import Executor, Session, TargetError, Variant, time_callable
from pruning.variant import copy_onnx
from targets.baselines import RuntimeBaseline
from targets.host_cpu import HostSession


class OrtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, description="intra-op threads; default: cores")
    quantize: Literal["none", "int8"] = Field("none", description="int8: ONNX Runtime's own static QDQ quantization "
                                              "of the (float) variant: per-channel int8 weights, uint8 activations")


class OrtExecutor(Executor):
    timer = "perf_counter"

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.feed: dict[str, np.ndarray] = {}

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.feed = {self.input: x}
        return self.sess.run(None, self.feed)[0]

    def time_runs(self, n: int) -> list[float]:
        return time_callable(lambda: self.sess.run(None, self.feed), n)


class OrtSession(HostSession):
    def __init__(self, device: str | None, threads: int) -> None:
        super().__init__("onnxruntime", device)
        self.threads = threads

    def load(self, artifact):
        return OrtExecutor(artifact.file("model.onnx"), self.threads)


def export_onnx(variant: Variant, path: Path) -> None:
    """torch.export-based ONNX export of the variant (a BYO ONNX file is copied as is, with its external
    data files: ONNX Runtime reads them next to the model)."""
    if variant.onnx_path is not None:
        copy_onnx(variant.onnx_path, path)
        return
    import contextlib
    import io
    import logging

    import torch

    # the exporter prints progress lines and warns about torchvision ops no zoo model uses
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(variant.exported, (torch.from_numpy(variant.example_input()),), str(path),
                              dynamo=True, verbose=False)
    except Exception as exc:
        raise TargetError(f"ONNX export of {variant.model} failed: {str(exc).strip().splitlines()[0][:300]}") from None


CALIBRATION_INPUTS = 16


def quantize_qdq(variant: Variant, path: Path) -> None:
    """Rewrite the ONNX file at `path` as ONNX Runtime's statically quantized (QDQ) int8 model."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = onnx.load(str(path), load_external_data=False).graph.input[0].name
    rng = np.random.default_rng(0)
    batches = [{name: rng.standard_normal(variant.example_input().shape, dtype=np.float32)}
               for _ in range(CALIBRATION_INPUTS)]

    class Inputs(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    fp32 = path.with_name("model.fp32.onnx")
    path.rename(fp32)
    try:
        quantize_static(str(fp32), str(path), Inputs(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as exc:
        raise TargetError(f"onnxruntime int8 quantization failed: {str(exc).strip().splitlines()[0][:200]}") from None


class OnnxRuntimeTarget(RuntimeBaseline):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider, threads = cores (baseline)"
    Options = OrtOptions
    package, version_tag, revision = "onnxruntime", "ort", 2

    def compile(self, variant: Variant, options: OrtOptions, workdir: Path) -> dict:
        import onnxruntime

        export_onnx(variant, workdir / "model.onnx")
        extra = {}
        if options.quantize == "int8":
            quantize_qdq(variant, workdir / "model.onnx")
            # judged as int8: the tolerance of what ran, not of the float variant it came from
            extra = {"executed": "int8", "verify_precision": "int8",
                     "quantization": "onnxruntime quantize_static QDQ, per-channel int8 weights, uint8 activations, "
                                     f"MinMax calibration on {CALIBRATION_INPUTS} N(0,1) inputs (the verification "
                                     "input's distribution)"}
        # ONNX Runtime's CPU kernels are dense: pruned weights cost the same as any other
        # (a quantized variant runs as its dequantized float graph here: said next to its bits)
        return {"onnxruntime": onnxruntime.__version__, "threads": options.threads or os.cpu_count(),
                "macs_effective": variant.manifest["macs_dense"], "executed": "fp32", **extra}

    def open(self, device: str | None, options: OrtOptions) -> Session:
        return OrtSession(device, options.threads or os.cpu_count() or 1)
