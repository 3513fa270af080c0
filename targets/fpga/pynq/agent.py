"""The board agent: runs on the PYNQ board's Python, drives the accelerator overlay through pynq, and
serves the host over TCP (targets/fpga/pynq/protocol.py).

    python3 -m targets.fpga.pynq.agent --bitstream jb_accel.bit --port 7967 [--host 0.0.0.0]

It needs numpy, pynq, and this repository's targets/fpga/{__init__,design,layer}.py and pynq/ (the
DDR layouts are the exact code the compiler packs with). It is never imported on the host: pynq pins
numpy<2. One client at a time; a client that drops leaves the overlay loaded for the next one.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from targets.fpga.pynq import protocol as P

# register map (byte offsets of the AXI-Lite port, rtl/jb_accel.v; duplicated from targets/fpga/sim.py,
# which needs the Verilator toolchain the board does not have)
REG_CTRL, REG_STATUS, REG_PROG, REG_IN, REG_OUT, REG_HWINFO = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
REG_COUNTERS = 0x20
COUNTERS = ("cycles", "cycles_dma", "cycles_compute", "bytes_read", "bytes_written", "mac_cycles", "lane_ops",
            "nz_lane_ops", "weight_nz", "act_nz", "stall_cycles", "out_beats", "epi_ops", "buf_writes")
ERRORS = {1: "bad descriptor magic", 2: "program built for another precision",
          3: "tile exceeds the on-chip buffers"}
MODES = {0: "int16", 1: "int8", 2: "int4", 3: "ternary", 4: "binary"}
IP_NAME = "jb_accel_0"  # the accelerator's instance name in the block design (vivado/build.tcl)


def decode_hwinfo(v: int) -> dict:
    """HWINFO = {TM[7:0], TN[7:0], 4'd0, WMODE[3:0], ABITS[7:0]}."""
    return {"tm": v >> 24 & 0xFF or 256, "tn": v >> 16 & 0xFF, "weight_mode": MODES.get(v >> 8 & 0xF, "?"),
            "act_bits": v & 0xFF}


class Accelerator:
    """The overlay's accelerator IP and the DDR buffers of each loaded program."""

    def __init__(self, pynq, overlay, ip: str, timeout_s: float = 10.0) -> None:
        self.pynq, self.overlay, self.timeout_s = pynq, overlay, timeout_s
        if not hasattr(overlay, ip):
            raise RuntimeError(f"overlay has no IP '{ip}' (ip_dict: {', '.join(getattr(overlay, 'ip_dict', {}))})")
        self.ip = getattr(overlay, ip)
        self.info = decode_hwinfo(self.ip.read(REG_HWINFO))
        self.programs: dict[str, tuple] = {}  # key -> (Program, prog buffer, in buffer, out buffer)

    def load(self, key: str, npz: bytes) -> dict:
        from targets.fpga.layer import Program

        prog = Program.load(io.BytesIO(npz))
        d = prog.meta["design"]
        want = {"tm": d["tm"], "tn": d["tn"], "weight_mode": d["weight_mode"], "act_bits": d["act_bits"]}
        if want != self.info:
            raise RuntimeError(f"program '{prog.meta.get('layer')}' is for design {want}, the overlay is {self.info}")
        self.drop(key)
        bufs = [self.pynq.allocate(shape=(max(n, 8),), dtype=np.uint8)
                for n in (len(prog.image), prog.in_bytes, prog.out_bytes)]
        bufs[0][:len(prog.image)] = prog.image
        bufs[0].flush()  # the accelerator reads DDR, not the CPU's cache
        for b in bufs:
            if b.physical_address + b.nbytes > 1 << 32:
                raise RuntimeError(f"buffer at {b.physical_address:#x} is beyond the accelerator's 32-bit addresses")
        self.programs[key] = (prog, *bufs)
        return {"image_bytes": len(prog.image), "in_bytes": prog.in_bytes, "out_bytes": prog.out_bytes}

    def drop(self, key: str) -> None:
        old = self.programs.pop(key, None)
        for b in (old or ())[1:]:
            b.freebuffer()

    def run(self, key: str, x: np.ndarray) -> tuple[np.ndarray, dict, float]:
        if key not in self.programs:
            raise RuntimeError(f"no program '{key}' loaded (send it with 'program' first)")
        prog, pb, ib, ob = self.programs[key]
        img = np.frombuffer(prog.input_image(x), dtype=np.uint8)
        ib[:len(img)] = img
        ib.flush()
        for reg, b in ((REG_PROG, pb), (REG_IN, ib), (REG_OUT, ob)):
            self.ip.write(reg, int(b.physical_address))
        t0 = time.perf_counter()
        self.ip.write(REG_CTRL, 1)
        deadline = t0 + self.timeout_s
        while True:
            status = self.ip.read(REG_STATUS)
            if status & 0x6 and not status & 1:  # done or error, and no longer busy
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"accelerator did not finish within {self.timeout_s} s (status {status:#x})")
        wall = time.perf_counter() - t0
        if status & 4:
            code = status >> 8 & 0xFF
            raise RuntimeError(f"accelerator rejected the program: {ERRORS.get(code, f'error {code}')}")
        ob.invalidate()  # drop stale cache lines before reading what the accelerator wrote
        y = prog.output_levels(bytes(ob[:prog.out_bytes]))
        return y, self.counters(), wall

    def counters(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(COUNTERS):
            a = REG_COUNTERS + 8 * i
            out[name] = self.ip.read(a) | self.ip.read(a + 4) << 32
        return out

    def close(self) -> None:
        for key in list(self.programs):
            self.drop(key)


class Model:
    """The ARM-side graph on the board's cores (a TVM Relax VM library), its offloaded layers calling the
    accelerator through the global functions the graph names (`jb_fpga.<tag>.<i>`)."""

    def __init__(self, accel: Accelerator, lib: bytes, suffix: str, tag: str, layers: list[int]) -> None:
        import tempfile

        import tvm
        from tvm import relax

        self.accel, self.tvm = accel, tvm
        for i in layers:
            _register(f"jb_fpga.{tag}.{i}", self._layer_fn(f"{tag}.{i}"))
        fd, path = tempfile.mkstemp(suffix=suffix, prefix="jb-model-")
        with os.fdopen(fd, "wb") as f:
            f.write(lib)
        try:
            self.dev = tvm.cpu()
            self.vm = relax.VirtualMachine(tvm.runtime.load_module(path), self.dev)  # a .tar links here
        finally:
            os.unlink(path)
        self.x = None
        self.counters: list[dict] = []

    def _layer_fn(self, key: str):
        def run(q, out) -> None:
            ys = []
            for image in q.numpy():
                y, c, _ = self.accel.run(key, image)
                self.counters.append(c)
                ys.append(y)
            out.copyfrom(np.stack(ys).astype(out.dtype))

        return run

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.x = self.tvm.runtime.tensor(x, self.dev)
        self.counters = []
        self.vm.set_input("main", self.x)
        self.vm.invoke_stateful("main")
        out = self.vm.get_outputs("main")
        return (out[0] if not hasattr(out, "numpy") else out).numpy()

    def time(self, n: int) -> list[float]:
        """Seconds per inference of the last input, on the board's clock (set_input once: as infer)."""
        if self.x is None:
            raise RuntimeError("infer first: timing repeats the last input")
        out = []
        for _ in range(n):
            self.counters = []
            t0 = time.perf_counter()
            self.vm.invoke_stateful("main")
            out.append(time.perf_counter() - t0)
        return out


def _register(name: str, fn) -> None:
    try:
        import tvm_ffi

        tvm_ffi.register_global_func(name, fn, override=True)
    except ImportError:  # TVM releases before the tvm-ffi split
        import tvm

        tvm.register_func(name, fn, override=True)


class Recorder:
    """pynq.DataRecorder over the board's PMBus rails (power sensors only: energy per rail)."""

    def __init__(self, pynq) -> None:
        self.pynq, self.rec = pynq, None

    def rails(self) -> list[str]:
        try:
            return sorted(self.pynq.get_rails())
        except Exception:  # boards without PMBus regulators (PYNQ-Z2) expose none
            return []

    def start(self, names: list[str], period_s: float) -> list[str]:
        self.stop()
        rails = self.pynq.get_rails()
        names = names or sorted(rails)
        missing = [n for n in names if n not in rails]
        if missing or not names:
            raise RuntimeError(f"no rail {missing or ''} on this board (has: {', '.join(sorted(rails)) or 'none'})")
        self.rec = self.pynq.DataRecorder(*(rails[n].power for n in names))
        self.rec.record(period_s)
        return names

    def mark(self) -> None:
        if self.rec is None:
            raise RuntimeError("no recording running (record_start first)")
        self.rec.mark()

    def stop(self) -> bytes:
        if self.rec is None:
            return b""
        self.rec.stop()
        # nanosecond timestamps: pandas >= 2 reads a microsecond string index as datetime64[us], whose
        # int64 view the pynq-rails meter would take for nanoseconds
        csv = self.rec.frame.to_csv(date_format="%Y-%m-%d %H:%M:%S.%f000").encode()
        self.rec = None
        return csv


def _temps(root: str) -> dict[str, float]:
    """Temperatures the kernel exposes (thermal zones; the Zynq's XADC / SYSMON through IIO)."""
    out: dict[str, float] = {}
    for z in sorted(Path(root, "sys/class/thermal").glob("thermal_zone*")):
        try:
            out[(z / "type").read_text().strip() or z.name] = int((z / "temp").read_text()) / 1000
        except (OSError, ValueError):
            pass
    for d in sorted(Path(root, "sys/bus/iio/devices").glob("iio:device*")):
        for raw in sorted(d.glob("in_temp*_raw")):
            try:
                stem = raw.name[:-4]
                scale = float((d / f"{stem}_scale").read_text())
                offset = float((d / f"{stem}_offset").read_text()) if (d / f"{stem}_offset").exists() else 0.0
                out[stem.removeprefix("in_")] = (int(raw.read_text()) + offset) * scale / 1000
            except (OSError, ValueError):
                pass
    return out


class Agent:
    def __init__(self, pynq, bitstream: str, ip: str = IP_NAME, board: str = "", sysfs_root: str = "/") -> None:
        self.pynq = pynq
        self.bitstream = bitstream
        self.overlay = pynq.Overlay(bitstream)
        self.accel = Accelerator(pynq, self.overlay, ip)
        self.recorder = Recorder(pynq)
        self.board = board or os.environ.get("BOARD", "")
        self.ip, self.sysfs_root = ip, sysfs_root
        self.model: Model | None = None

    def clock_hz(self) -> float:
        return float(self.pynq.Clocks.fclk0_mhz) * 1e6

    def handle(self, h: dict, payload: bytes) -> tuple[dict, bytes]:
        op = h.get("op")
        if op == "hello":
            return {"version": P.VERSION, "board": self.board, "overlay": Path(self.bitstream).name, "ip": self.ip,
                    "design": self.accel.info, "clock_hz": self.clock_hz(), "rails": self.recorder.rails()}, b""
        if op == "program":
            return self.accel.load(str(h["key"]), payload), b""
        if op == "run":
            y, counters, wall = self.accel.run(str(h["key"]), P.to_array(h, payload))
            y = y.astype(np.int32)
            return {**P.array_header(y), "counters": counters, "wall_s": wall}, P.contiguous(y)
        if op == "model":
            self.model = None
            self.model = Model(self.accel, payload, str(h.get("suffix", ".so")), str(h["tag"]), list(h["layers"]))
            return {}, b""
        if op in ("infer", "time") and self.model is None:
            raise RuntimeError("no model loaded (send it with 'model' first)")
        if op == "infer":
            y = self.model.infer(P.to_array(h, payload))
            return {**P.array_header(y), "counters": self.model.counters}, P.contiguous(y)
        if op == "time":
            return {"seconds": self.model.time(int(h["n"])), "counters": self.model.counters}, b""
        if op == "record_start":
            return {"rails": self.recorder.start(list(h.get("rails") or []), float(h.get("period_s", 0.01)))}, b""
        if op == "mark":
            self.recorder.mark()
            return {}, b""
        if op == "record_stop":
            return {}, self.recorder.stop()
        if op == "snapshot":
            return {"fabric_hz": {"pl0": self.clock_hz()}, "temps_c": _temps(self.sysfs_root),
                    "info": {"board": self.board, "overlay": Path(self.bitstream).name, "design": self.accel.info}}, b""
        raise RuntimeError(f"unknown op '{op}'")

    def serve_client(self, conn: socket.socket) -> None:
        f = conn.makefile("rwb")
        try:
            while True:
                try:
                    h, payload = P.recv(f)
                except P.ProtocolError:
                    return
                if h.get("op") == "bye":
                    P.send(f, {"ok": True})
                    return
                try:
                    reply, data = self.handle(h, payload)
                    P.send(f, {"ok": True, **reply}, data)
                except Exception as exc:  # one line back to the host; the agent keeps serving
                    text = str(exc).strip().splitlines()
                    P.send(f, {"ok": False, "error": f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]})
        finally:
            self.recorder.stop()
            f.close()
            conn.close()

    def serve(self, host: str, port: int, ready=None) -> None:
        with socket.create_server((host, port)) as srv:
            if ready is not None:
                ready(srv.getsockname()[1])
            while True:
                conn, _ = srv.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.serve_client(conn)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="joulebench FPGA board agent (runs on the PYNQ board)")
    ap.add_argument("--bitstream", required=True, help="the overlay's .bit (its .hwh next to it)")
    ap.add_argument("--ip", default=IP_NAME, help="the accelerator's instance name in the block design")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=P.DEFAULT_PORT, help="0: any free port (printed)")
    ap.add_argument("--board", default="", help="the board's catalog key, reported to the host")
    ap.add_argument("--sysfs-root", default="/")
    a = ap.parse_args(argv)
    import pynq

    agent = Agent(pynq, a.bitstream, a.ip, a.board, a.sysfs_root)
    # the first stdout line says where it listens (tests and scripts read it)
    agent.serve(a.host, a.port, ready=lambda p: print(f"listening {a.host}:{p}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
