"""The peers our kernels are held to: OpenVINO (fp32, as the IR keeps it) and ONNX Runtime's own int8."""

from __future__ import annotations

import onnx
import pandas as pd

from bench import campaign as campaign_mod
from bench.runner import Runner
from tests.conftest import write_campaign

BODY = ('[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "openvino"\n'
        '[[targets]]\nname = "onnxruntime"\nquantize = "int8"\n')


def test_openvino_fp32_and_onnxruntime_int8_are_verified_and_say_what_ran(tmp_path):
    camp = campaign_mod.load(write_campaign(tmp_path / "c.toml", BODY))
    Runner(camp, tmp_path / "run").run()
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet").set_index("target")
    assert df["status"].eq("ok").all() and df["verified"].all()
    ov, ort8 = df.loc["openvino"], df.loc["onnxruntime"]
    assert ov["executed"] == "fp32" and ov["max_abs_err"] < 1e-4  # fp32 weights in the IR, f32 inference
    assert ort8["executed"] == "int8" and ort8["tolerance"] > ov["tolerance"]  # judged as the int8 it ran
    ops = {n.op_type for n in onnx.load(f"{ort8['artifact']}/model.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    xml = (tmp_path / "run" / "artifacts").glob("*openvino*/model.xml")
    assert 'element_type="f16"' not in next(xml).read_text()  # not silently halved by save_model


def test_host_cpu_runs_parallel_loops_on_every_core_like_the_peers():
    """TVM's x86 runtime, left alone, takes half the cores (it assumes hyper-threads): one thread on this
    2-core machine. A host-cpu session uses one thread per core, as OpenVINO and ONNX Runtime do."""
    import os
    import threading

    import numpy as np
    import tvm
    import tvm_ffi
    from tvm.script import tirx as T

    from targets.host_cpu import HostCPUSession

    seen: set[int] = set()

    @tvm_ffi.register_global_func("jb_test.thread_id", override=True)
    def thread_id(_i):
        seen.add(threading.get_native_id())
        return 0

    @T.prim_func
    def touch(a: T.Buffer((64,), "int32")):
        for i in T.parallel(64):
            a[i] = T.call_packed("jb_test.thread_id", i)

    HostCPUSession(None, None)
    tvm.tirx.build(tvm.IRModule({"main": touch}), "llvm")["main"](tvm.runtime.tensor(np.zeros(64, "int32"), tvm.cpu()))
    assert len(seen) == len(os.sched_getaffinity(0))
