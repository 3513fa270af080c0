"""What the plane form of depthwise convs buys, side by side in one run (tune_trials = 0).

    python -m bench.benchmarks.depthwise_planes [--models mobilenetv2-cifar,...] [--rounds R] [--runs N]

Per model, the dense fp32 and the dense int8 build twice each: depthwise convs in the pixel form (pad
copy, flat tiles, separate output pass) and in the plane form (`targets.tvm.lowering.PLANES`, the
default: each channel's plane in registers, taps as shuffles). All four are verified against PyTorch;
the int8 builds must agree bit for bit (integer levels, exact in fp32 either way). The four are timed
in interleaved rounds in a shuffled order (sparse_speedup's timer). The last line is JSON, per model:
the medians in ms, each precision's speedup (pixel / planes), int8 over fp32 in each form, and how
many layers took planes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.benchmarks._switch import build_switched
from bench.benchmarks.sparse_speedup import _time, parse_args
from pruning.compress import CompressionSpec

MODELS = ("mobilenetv2-cifar",)
SPECS = {"fp32": CompressionSpec(), "int8": CompressionSpec(bits=8)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv, __doc__, MODELS, 9)
    result = {}
    for model in args.models.split(","):
        exs, outs, planes = {}, {}, 0
        for prec, spec in SPECS.items():
            for form, on in (("pixels", False), ("planes", True)):
                ex, outs[prec, form], manifest = build_switched(model, spec, "PLANES", on, f"{prec}, {form}")
                exs[f"{prec} {form}"] = (ex,)
                if on:
                    planes = sum(la["vectorized"] == "planes" for la in manifest["lowered_layers"])
        if not np.array_equal(outs["int8", "pixels"], outs["int8", "planes"]):
            sys.exit(f"{model}: the int8 plane build differs from the pixel one; integer levels must agree bit for bit")
        med = _time(exs, args.rounds, args.runs)
        row = {f"{k} ms": round(v, 3) for k, v in med.items()}
        for prec in SPECS:
            row[f"{prec} speedup"] = round(med[f"{prec} pixels"] / med[f"{prec} planes"], 3)
        for form in ("pixels", "planes"):
            row[f"int8_vs_fp32 {form}"] = round(med[f"fp32 {form}"] / med[f"int8 {form}"], 3)
        row["layers on planes"] = planes
        result[model] = row
        print(f"{model:<18} measured medians, depthwise in the pixel form → planes ({planes} layers): "
              f"fp32 {med['fp32 pixels']:.3f} → {med['fp32 planes']:.3f} ms ({row['fp32 speedup']:.3f}x), "
              f"int8 {med['int8 pixels']:.3f} → {med['int8 planes']:.3f} ms ({row['int8 speedup']:.3f}x, bit-identical); "
              f"int8 over fp32 {row['int8_vs_fp32 pixels']:.2f}x → {row['int8_vs_fp32 planes']:.2f}x", flush=True)
        del exs
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("JOULEBENCH_CACHE", str(Path(tempfile.gettempdir()) / "joulebench-bench-cache"))
    main()
