"""The issue-11 checks on a finished run of campaigns/mobile-vs-fpga.toml: every fpga-sim row verified,
accelerator cycles of block 4x / 8x against dense at the same precision and board, and LUT / DSP per MAC
lane of each design point.

    python -m bench.benchmarks.fpga_campaign_check RUN_DIR

Variants are named PRECISION-PRUNING (int8-dense, ternary-block8x, ...) as in the campaign. Last line JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> dict:
    run = Path((argv if argv is not None else sys.argv[1:])[0])
    df = pd.read_parquet(run / "measurements.parquet")
    f = df[df["target"] == "fpga-sim"].copy()
    f[["precision", "pruning"]] = f["variant"].str.split("-", n=1, expand=True)
    cyc = f.pivot_table(index=["model", "board", "precision"], columns="pruning", values="cycles")
    for level in ("block4x", "block8x"):
        cyc[f"dense/{level}"] = cyc["dense"] / cyc[level]
    f["lanes"] = f["array"].str.split("x").map(lambda a: int(a[0]) * int(a[1]))
    lane = f.groupby(["board", "precision", "array"])[["lut", "dsp", "lanes"]].first()
    lane["lut_per_lane"] = lane["lut"] / lane["lanes"]
    lane["dsp_per_lane"] = lane["dsp"] / lane["lanes"]
    print(cyc.round(2).to_string(), "\n")
    print(lane.round(3).to_string(), "\n")
    per = lane.droplevel("array")[["lut_per_lane", "dsp_per_lane"]]
    cheaper = {b: bool((per.loc[[(b, "ternary"), (b, "binary")]] < per.loc[(b, "int8")]).all().all())
               for b in per.index.get_level_values("board").unique()}
    out = {"fpga_rows": len(f), "all_ok": bool((f["status"] == "ok").all()), "all_verified": bool(f["verified"].all()),
           "min_dense_over_block8x": round(float(cyc["dense/block8x"].min()), 2),
           "min_dense_over_block4x": round(float(cyc["dense/block4x"].min()), 2),
           "ternary_binary_fewer_lut_and_dsp_per_lane": cheaper}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
