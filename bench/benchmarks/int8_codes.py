"""What handing uint8 codes between 8-bit layers buys, side by side in one run (tune_trials = 0).

    python -m bench.benchmarks.int8_codes [--models resnet50-cifar,...] [--rounds R] [--runs N]

Per model, the dense int8 build twice: with 8-bit layers exchanging float32 (each quantizing its own
input in its pad stage) and with uint8 codes wherever every consumer can read them (the default,
`targets.tvm.lowering.CODES`). Both are verified against PyTorch and must agree bit for bit (every
kernel quantizes by the same expression); then they are timed in interleaved rounds in a shuffled
order (sparse_speedup's timer). The last line is JSON, per model: both medians in ms, the speedup
(float32 / codes) and how many layers write codes.
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

MODELS = ("resnet50-cifar", "mobilenetv2-cifar")


def _build(model: str, codes: bool):
    """(executor, output on the example input, layers writing codes) of the model's int8 build."""
    ex, out, manifest = build_switched(model, CompressionSpec(bits=8), "CODES", codes,
                                       f"int8, {'codes' if codes else 'float32'}")
    return ex, out, sum(la.get("output") == "uint8" for la in manifest["lowered_layers"])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv, __doc__, MODELS, 9)
    result = {}
    for model in args.models.split(","):
        (ex_f, out_f, _), (ex_c, out_c, writes) = _build(model, False), _build(model, True)
        if not np.array_equal(out_f, out_c):
            sys.exit(f"{model}: the codes build differs from the float32 one (max |diff| "
                     f"{float(np.abs(out_f - out_c).max()):.3g}); they must agree bit for bit")
        med = _time({"float32": (ex_f,), "codes": (ex_c,)}, args.rounds, args.runs)
        result[model] = {"float32 ms": round(med["float32"], 3), "codes ms": round(med["codes"], 3),
                         "speedup": round(med["float32"] / med["codes"], 3), "layers writing codes": writes}
        print(f"{model:<18} int8 (measured medians), float32 between layers {med['float32']:7.3f} ms, uint8 codes "
              f"{med['codes']:7.3f} ms ({writes} layers write codes; bit-identical): "
              f"{med['float32'] / med['codes']:.3f}x", flush=True)
        del ex_f, ex_c
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("JOULEBENCH_CACHE", str(Path(tempfile.gettempdir()) / "joulebench-bench-cache"))
    main()
