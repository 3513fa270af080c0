"""How far is the FPGA power model (modeled:fpga-power@1) from published measured board power?

    python -m bench.benchmarks.fpga_power_validation

For each published point (targets/devices/published.toml): the measured board power, the model fitted on all
points, and the leave-one-out prediction (refit without the point, predict it) with its relative error on
total board power and on the increment above idle. Then the latency model's design-space check against
Zhang et al. (FPGA'15). The last line is one JSON object for scripts to track.
"""

from __future__ import annotations

import argparse
import json
import sys

from targets.devices.catalog import load_published
from targets.fpga import power
from targets.fpga.latency import PROVENANCE as LATENCY_PROVENANCE
from targets.fpga.latency import ConvLayer, tiled_conv_cycles


def zhang_check() -> dict:
    lp = load_published().latency_points["zhang-fpga15"]
    layers = [ConvLayer(x.r, x.c, x.m, x.n, x.k, x.groups) for x in lp.layers]
    cycles = tiled_conv_cycles(layers, int(lp.tm.value), int(lp.tn.value))
    seconds = cycles / (lp.clock_mhz.value * 1e6)
    gflops = sum(x.flops for x in layers) / seconds / 1e9
    return {"model_gflops": gflops, "published_gflops": lp.gflops.value, "model_ms": seconds * 1e3,
            "cycles": cycles, "error": (gflops - lp.gflops.value) / lp.gflops.value}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    pts = power.point_inputs()
    coeffs = power.fit(pts)
    loo = {r.key: r for r in power.leave_one_out(pts)}
    print(f"{power.PROVENANCE}: k_pl = {coeffs.k_pl_w:.3f} W (reference fabric, 100 MHz, alpha = 1), "
          f"p_arm = {coeffs.p_arm_w:.3f} W per busy core, e_ddr = {coeffs.e_ddr_j_per_bit * 1e12:.0f} pJ/bit (fixed)")
    head = f"{'point':<18}{'fps':>8}{'idle W':>8}{'meas. W':>9}{'fit W':>8}{'LOO W':>8}{'LOO err':>9}{'incr. err':>10}"
    print(head)
    print("-" * len(head))
    rows = []
    for p in pts:
        if not p.scored:
            continue
        r = loo[p.key]
        print(f"{p.key:<18}{p.fps:>8.1f}{p.static_w:>8.2f}{r.published_w:>9.2f}{r.fitted_w:>8.2f}"
              f"{r.predicted_w:>8.2f}{r.rel_error:>+9.1%}{r.increment_rel_error:>+10.1%}")
        rows.append({"point": p.key, "published_w": r.published_w, "fitted_w": r.fitted_w,
                     "loo_predicted_w": r.predicted_w, "loo_error": r.rel_error,
                     "increment_loo_error": r.increment_rel_error})
    worst = max(abs(r["loo_error"]) for r in rows)
    worst_inc = max(abs(r["increment_loo_error"]) for r in rows)
    print(f"worst LOO error: {worst:.1%} of board power, {worst_inc:.1%} of the increment above idle")
    lobo = power.leave_one_board_out(pts)
    print("leave-one-board-out (all points of a board left out), worst error on board power: "
          + ", ".join(f"{b} {e:.1%}" for b, e in lobo.items()))
    unscored = []
    for p in pts:
        if p.scored:
            continue
        pred = power.predict(p, coeffs)
        unscored.append({"point": p.key, "published_w": p.full_w, "predicted_w": pred, "static_w": p.static_w})
        print(f"not scored: {p.key}: measured {p.full_w:.2f} W, model {pred:.2f} W on the board's base power "
              f"{p.static_w:.2f} W (no idle with the design loaded is published; the gap is the design's idle power)")
    z = zhang_check()
    print(f"{LATENCY_PROVENANCE}: Zhang et al. FPGA'15 AlexNet conv, Tm=64 Tn=7 @100 MHz: compute roof "
          f"{z['model_gflops']:.2f} GFLOPS ({z['model_ms']:.2f} ms) vs {z['published_gflops']:.2f} measured: "
          f"{z['error']:+.1%}")
    out = {"power_loo_error": worst, "power_increment_loo_error": worst_inc, "points": rows,
           "leave_one_board_out_error": lobo,
           "unscored": unscored, "coefficients": {"k_pl_w": coeffs.k_pl_w, "p_arm_w": coeffs.p_arm_w,
                                                  "e_ddr_j_per_bit": coeffs.e_ddr_j_per_bit},
           "zhang_fpga15": z}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
