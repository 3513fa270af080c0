"""How far is the mobile-GPU model (modeled:mobile-gpu@1) from published mobile-GPU latencies and energies?

    python -m bench.benchmarks.mobile_gpu_validation              # report, from the committed kernel stats
    python -m bench.benchmarks.mobile_gpu_validation --generate   # rebuild the kernel stats first (slow)

For each published point (targets/devices/published.toml, gpu_points): the measured latency, the model fitted on
all points, the leave-one-out prediction (refit without the point, predict it) and the leave-one-network-out one
(refit without every point of that network, both precisions and both GPUs), with their errors; the medians of the
absolute errors. Then the energy check against DeepEn2023's ranges: each range's network predicted with k_e fitted
on the other range only. The last line is one JSON object for scripts to track.

--generate compiles every build the points name with the android-gpu-model target (TVM 0.27, cached per
(network, profile, precision) under the joulebench cache) and writes targets/android/mobile_gpu_kernels.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from targets.android import gpu_model as gm
from targets.devices.catalog import load_published

# the GPU each build is compiled for (its family decides the profile's kernels; the stats do not depend on it)
BUILD_GPU = {"adreno": "adreno-740", "mali": "mali-t860-mp4"}


def generate(keys: list[str] | None = None) -> dict:
    """Compile the builds of the published points (and of the energy ranges) and write the kernel-stats file."""
    import tvm

    from bench.runner import compile_cached
    from pruning.compress import CompressionSpec, make_variant
    from pruning.variant import ModelSpec

    pub = load_published()
    wanted: dict[str, tuple[str, str, str, str]] = {}
    for p in pub.gpu_points.values():
        wanted[gm.build_key(p.network, p.profile, p.precision, p.lowering)] = (p.network, p.profile, p.precision,
                                                                                p.lowering)
    for r in pub.gpu_energy_ranges.values():
        prof = "adreno-texture" if gm.load().gpu(r.gpu).family == "adreno" else "mali"
        wanted[gm.build_key(r.network, prof, r.precision, "tvm")] = (r.network, prof, r.precision, "tvm")
    old = json.loads(gm.DATA.read_text())["builds"] if gm.DATA.is_file() else {}
    builds = dict(old)
    target = gm.AndroidGPUModelTarget()
    for bk, (network, profile, precision, lowering) in sorted(wanted.items()):
        if keys and bk not in keys:
            continue
        t0 = time.perf_counter()
        variant = make_variant(ModelSpec(name=network), CompressionSpec(precision=precision))
        opts = target.parse_options({"gpu": BUILD_GPU[gm.PROFILE_FAMILY[profile]], "profile": profile,
                                     "lowering": lowering})
        artifact, _ = compile_cached(target, variant, opts)
        mf = artifact.manifest
        builds[bk] = {"kernels": gm.compact(mf["kernel_stats"]), "macs": mf["macs_effective"],
                      "flops": mf["flops_per_inference"], "useful_flops": mf["useful_flops_per_inference"],
                      "bytes": mf["bytes_per_inference"], "launches": mf["launches_per_inference"]}
        macs2 = 2 * mf["macs_effective"]
        print(f"{bk:<48} {time.perf_counter() - t0:7.1f} s  {mf['launches_per_inference']:4d} launches  "
              f"FLOPs / (2 MACs) = {mf['flops_per_inference'] / macs2:.3f} executed, "
              f"{mf['useful_flops_per_inference'] / macs2:.3f} useful", flush=True)
    data = {"version": 1, "tvm": tvm.__version__, "stats_version": gm.STATS_VERSION,
            "note": "per build: kernels as [FLOPs executed, FLOPs outside output padding, bytes, launches per "
                    "inference, dtype], identical kernels merged",
            "builds": dict(sorted(builds.items()))}
    gm.DATA.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _pred(p: gm.Point, c: gm.Coefficients) -> float:
    return gm.latency(list(p.kernels), p.gpu, c, useful=True).seconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true", help="recompile the builds and rewrite the kernel stats")
    ap.add_argument("--only", nargs="*", help="with --generate: only these build keys")
    args = ap.parse_args(argv)
    if args.generate:
        generate(args.only)
    pub = load_published()
    pts = gm.points(pub)
    c = gm.fit_latency(pts)
    print(f"{gm.PROVENANCE}: fitted on all {len(pts)} points: eta_c adreno = {c.eta_compute['adreno']:.3f}, "
          f"mali = {c.eta_compute['mali']:.3f}; t_launch adreno = {c.launch_s['adreno'] * 1e6:.1f} us, "
          f"mali = {c.launch_s['mali'] * 1e6:.1f} us; eta_m = {c.eta_memory:.3f} (measured, fixed)")
    head = (f"{'point':<26}{'GPU':<15}{'meas. ms':>9}{'fit ms':>9}{'fit err':>9}{'LOO ms':>9}{'LOO err':>9}"
            f"{'LONO err':>10}")
    print(head)
    print("-" * len(head))
    rows = []
    for p in pts:
        loo = gm.fit_latency([q for q in pts if q.key != p.key])
        lono = gm.fit_latency([q for q in pts if q.network != p.network])
        fit_s, loo_s, lono_s = _pred(p, c), _pred(p, loo), _pred(p, lono)
        r = {"point": p.key, "gpu": p.gpu.key, "measured_ms": p.measured_s * 1e3, "fitted_ms": fit_s * 1e3,
             "fit_error": fit_s / p.measured_s - 1, "loo_ms": loo_s * 1e3, "loo_error": loo_s / p.measured_s - 1,
             "lono_error": lono_s / p.measured_s - 1}
        rows.append(r)
        print(f"{p.key:<26}{p.gpu.key:<15}{r['measured_ms']:>9.2f}{r['fitted_ms']:>9.2f}{r['fit_error']:>+9.1%}"
              f"{r['loo_ms']:>9.2f}{r['loo_error']:>+9.1%}{r['lono_error']:>+10.1%}")
    med = {k: statistics.median(abs(r[k]) for r in rows) for k in ("fit_error", "loo_error", "lono_error")}
    print(f"median |error|: fitted {med['fit_error']:.1%}, leave-one-out {med['loo_error']:.1%}, "
          f"leave-one-network-out {med['lono_error']:.1%}")

    energy_rows = []
    ranges = pub.gpu_energy_ranges
    targets = gm.energy_targets(pub)
    for key, kernels, gpu, _target in targets:
        others = [t for t in targets if t[0] != key] or targets
        ce = gm.fit_energy_scale(c, others)
        lat = gm.latency(kernels, gpu, ce, useful=True)
        e = gm.energy(kernels, gpu, lat, ce, useful=True)
        r = ranges[key]
        scale = gm.flops_scale(r, kernels)
        lo, hi = r.min_mj.value * scale, r.max_mj.value * scale
        mj = e.active_joules * 1e3
        energy_rows.append({"range": key, "gpu": gpu.key, "network": r.network, "k_e_fitted_on": list(ce.energy_fitted_on),
                            "k_e": ce.energy_scale, "predicted_mj": mj, "latency_ms": lat.seconds * 1e3,
                            "published_range_mj": [r.min_mj.value, r.max_mj.value], "flops_scale": scale,
                            "scaled_range_mj": [lo, hi], "inside": lo <= mj <= hi,
                            "error_vs_scaled_center": mj / (gm.range_center_mj(r) * scale) - 1})
    full = gm.fit_energy_scale(c, targets)
    print(f"energy: k_e = {full.energy_scale:.1f} (fitted on both ranges' centres, per FLOP); hold-out checks "
          "(k_e from the other range only; range scaled by dense FLOPs / variants' average FLOPs):")
    for er in energy_rows:
        lo, hi = er["scaled_range_mj"]
        print(f"  {er['range']:<20}{er['gpu']:<12}{er['predicted_mj']:7.1f} mJ (k_e {er['k_e']:.1f}, "
              f"{er['latency_ms']:.2f} ms)  published {er['published_range_mj'][0]}-{er['published_range_mj'][1]} mJ"
              f" x {er['flops_scale']:.2f} = {lo:.1f}-{hi:.1f} mJ: {'inside' if er['inside'] else 'OUTSIDE'}, "
              f"{er['error_vs_scaled_center']:+.1%} from its centre")
    result = {"model": gm.PROVENANCE, "coefficients": {"eta_compute": c.eta_compute, "launch_s": c.launch_s,
                                                       "eta_memory": c.eta_memory, "energy_scale": full.energy_scale},
              "points": rows, "median_abs_error": med, "energy": energy_rows}
    print(json.dumps(result, separators=(",", ":")))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
