"""Simulation speed of the Verilator model compiled at -O2 and at -O3, side by side in one run (this machine
is noisy): every int8 layer of ResNet-18-CIFAR on a 16x16 array, alternating the two builds, twice.

    python -m bench.benchmarks.fpga_sim_cxxflags

Prints M simulated cycles per wall second of each and the ratio; the last line is JSON. targets/fpga/sim.py
builds with the faster one.
"""

from __future__ import annotations

import json

import numpy as np


def main() -> dict:
    from bench.benchmarks.fpga_sim import _layers
    from pruning.compress import CompressionSpec, make_variant
    from pruning.variant import ModelSpec
    from targets.fpga import sim as S
    from targets.fpga.design import DesignPoint
    from targets.fpga.layer import pack

    d = DesignPoint(tm=16, tn=16, weight_mode="int8", act_bits=8)
    rep = _layers(make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(bits=8)), d)
    rng = np.random.default_rng(0)
    work = [(pack(o.layer, d), rng.integers(-128, 128, size=(o.layer.c, o.layer.h, o.layer.w))) for o in rep.layers]
    default = list(S.CXX_FLAGS)
    sims = {}
    try:
        for opt in ("-O2", "-O3"):  # the flags are part of the build's cache key: two libraries
            S.CXX_FLAGS = [opt] + [f for f in default if not f.startswith("-O")]
            sims[opt] = S.Simulator(d)
    finally:
        S.CXX_FLAGS = default
    tot = {k: [0, 0.0] for k in sims}
    for _ in range(2):
        for opt, sim in sims.items():
            for prog, x in work:
                r = sim.run_program(prog, x)
                tot[opt][0] += r.cycles
                tot[opt][1] += r.sim_seconds
    for sim in sims.values():
        sim.close()
    rate = {k: c / s / 1e6 for k, (c, s) in tot.items()}
    for k, v in rate.items():
        print(f"{k}: {v:.2f} M simulated cycles/s")
    out = {"mcycles_per_s": {k: round(v, 3) for k, v in rate.items()}, "o3_over_o2": round(rate["-O3"] / rate["-O2"], 3)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
