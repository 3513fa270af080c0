"""Does block pruning pay off under TVM? ResNet-18-CIFAR, every configuration timed in one process.

    python -m bench.benchmarks.sparse_speedup [--tune-trials N] [--rounds R]

Configurations are compiled first, then timed in interleaved rounds (each round times every
configuration once), so machine noise hits them alike; medians are over all rounds' samples.
Every output is verified against its PyTorch reference before it is timed. The last line is one
JSON object for scripts to track.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec

MODEL = ModelSpec(name="resnet18-cifar", seed=0)


def _configs() -> dict[str, tuple[str, CompressionSpec]]:
    block = lambda s: CompressionSpec(scheme="block", sparsity=s, block="8x16")  # noqa: E731
    return {
        "tvm dense fp32": ("host-cpu", CompressionSpec()),
        "tvm block 2x": ("host-cpu", block(0.5)),
        "tvm block 4x": ("host-cpu", block(0.75)),
        "tvm block 8x": ("host-cpu", block(0.875)),
        "tvm unstructured 8x": ("host-cpu", CompressionSpec(scheme="unstructured", sparsity=0.875)),
        "tvm dense int8": ("host-cpu", CompressionSpec(bits=8)),
        "torch-eager dense": ("torch-eager", CompressionSpec()),
        "onnxruntime dense": ("onnxruntime", CompressionSpec()),
    }


def _load(target_name: str, spec: CompressionSpec, tune_trials: int):
    import targets as registry
    from bench.runner import compile_cached

    target = registry.get(target_name)
    variant = make_variant(MODEL, spec)
    opts = target.parse_options({"tune_trials": tune_trials} if target_name == "host-cpu" else {})
    artifact, _ = compile_cached(target, variant, opts)
    ex = target.open(None, opts).load(artifact)
    return variant, artifact, ex


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tune-trials", type=int, default=0, help="MetaSchedule trials for every TVM build")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--runs", type=int, default=10, help="inferences per configuration per round")
    args = ap.parse_args(argv)
    from bench.verify import check_output

    loaded: dict[str, tuple] = {}
    for name, (target, spec) in _configs().items():
        t0 = time.perf_counter()
        variant, artifact, ex = _load(target, spec, args.tune_trials)
        check = check_output(np.asarray(ex.infer(variant.example_input())), variant.reference_output, variant.precision)
        if not check.ok:
            sys.exit(f"{name}: {check.message}")
        macs = artifact.manifest.get("macs_effective", variant.manifest["macs_effective"])
        loaded[name] = (ex, macs, variant.manifest["macs_dense"])
        print(f"ready  {name:<22} verified (max |err| {check.max_abs_err:.2e}), "
              f"compiled MACs {macs / 1e6:7.1f}M  [{time.perf_counter() - t0:.0f}s]", flush=True)
    samples: dict[str, list[float]] = {k: [] for k in loaded}
    for _ in range(args.rounds):
        for name, (ex, _, _) in loaded.items():
            ex.time_runs(2)  # re-warm caches after the previous configuration
            samples[name] += ex.time_runs(args.runs)
    med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
    print(f"\nResNet-18-CIFAR, batch 1, {os.cpu_count()} cores; {args.rounds} rounds x {args.runs} runs; "
          f"tune_trials={args.tune_trials}; latency = measured median (ms)")
    dense = med["tvm dense fp32"]
    for name, ms in med.items():
        macs, dense_macs = loaded[name][1], loaded[name][2]
        line = f"  {name:<22} {ms:8.3f} ms   vs dense TVM {dense / ms:5.2f}x"
        if name.startswith("tvm block") or name.startswith("tvm unstructured"):
            line += f"   MAC reduction {dense_macs / macs:5.2f}x   realization {(dense / ms) / (dense_macs / macs):4.2f}"
        print(line)
    b8 = med["tvm block 8x"]
    block8_macs, dense_macs = loaded["tvm block 8x"][1], loaded["tvm block 8x"][2]
    result = {
        "speedup_4x_vs_dense_tvm": round(dense / med["tvm block 4x"], 3),
        "speedup_8x_vs_dense_tvm": round(dense / b8, 3),
        "realization_8x": round((dense / b8) / (dense_macs / block8_macs), 3),
        "speedup_8x_vs_torch": round(med["torch-eager dense"] / b8, 3),
        "speedup_8x_vs_ort": round(med["onnxruntime dense"] / b8, 3),
        "dense_tvm_vs_torch": round(med["torch-eager dense"] / dense, 3),
        "dense_tvm_vs_ort": round(med["onnxruntime dense"] / dense, 3),
        "int8_vs_fp32": round(dense / med["tvm dense int8"], 3),
        "tune_trials": args.tune_trials,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("JOULEBENCH_CACHE", str(Path(tempfile.gettempdir()) / "joulebench-bench-cache"))
    main()
