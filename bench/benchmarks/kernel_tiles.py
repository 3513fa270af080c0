"""What each host-cpu kernel design step buys, side by side in one run: ResNet-18-CIFAR (seeded), tune_trials = 0.

    python -m bench.benchmarks.kernel_tiles [--rounds R] [--runs N]

Configurations (each built with the shared lowering, verified against PyTorch, then all timed in interleaved
rounds): the channel-vectorized kernel with 8 vs 16 output channels per row-block (one AVX-512 register holds
16 fp32 lanes); the channel- vs the pixel-vectorized kernel (pixel_kernels.py) on the dense and the block 8x
(8x16 blocks) build; and the default build on one thread vs one thread per core. The last line is JSON
(medians in ms).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec

DENSE, BLOCK8 = CompressionSpec(), CompressionSpec(scheme="block", sparsity=0.875, block="8x16")
# name -> (compression, vector lanes, pixel form (False: channel form only), threads (None: one per core))
CONFIGS = {
    "dense channels br8": (DENSE, 8, False, None),
    "dense channels br16": (DENSE, 16, False, None),
    "dense pixels": (DENSE, 16, True, None),
    "block8x channels": (BLOCK8, 16, False, None),
    "block8x pixels": (BLOCK8, 16, True, None),
    "dense pixels 1 thread": (DENSE, 16, True, 1),
}


def _build(spec: CompressionSpec, lanes: int, pixels: bool, workdir: Path):
    import targets as registry
    import targets.tvm.lowering as lowering
    from bench.api import Artifact

    target = registry.get("host-cpu")
    variant = make_variant(ModelSpec(name="resnet18-cifar", seed=0), spec)
    layout = lowering.pixel_layout if pixels else (lambda *_a, **_k: None)  # None: every layer on channels
    with mock.patch("targets.host_cpu.vector_lanes", lambda _t: lanes), mock.patch.object(lowering, "pixel_layout", layout):
        manifest = target.compile(variant, target.parse_options({}), workdir)
    return variant, Artifact("host-cpu", workdir, manifest, variant)


def main(argv: list[str] | None = None) -> dict:
    from bench.verify import check_output
    from targets.host_cpu import HostCPUSession, use_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    loaded = {}
    for name, (spec, lanes, pixels, _threads) in CONFIGS.items():
        variant, artifact = _build(spec, lanes, pixels, Path(tempfile.mkdtemp(prefix="jb-tiles-")))
        ex = HostCPUSession(None, None).load(artifact)
        check = check_output(np.asarray(ex.infer(variant.example_input())), variant.reference_output, "fp32")
        assert check.ok, f"{name}: {check.message}"
        loaded[name] = ex
        print(f"ready  {name}", flush=True)
    samples: dict[str, list[float]] = {k: [] for k in loaded}
    for _ in range(args.rounds):
        for name, ex in loaded.items():
            use_threads(CONFIGS[name][3] or cores)
            ex.time_runs(2)
            samples[name] += ex.time_runs(args.runs)
    use_threads(cores)
    med = {k: round(float(np.median(v)) * 1e3, 3) for k, v in samples.items()}
    for k, v in med.items():
        print(f"  {k:<22} {v:8.3f} ms")
    print(json.dumps(med))
    return med


if __name__ == "__main__":
    os.environ.setdefault("JOULEBENCH_CACHE", str(Path(tempfile.gettempdir()) / "joulebench-bench-cache"))
    main()
