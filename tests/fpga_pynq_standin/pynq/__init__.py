"""Stand-in for the `pynq` package on a board, for tests on a machine without one: exactly the API
surface targets/fpga/pynq/agent.py uses, with the accelerator backed by the Verilator model
(targets.fpga.sim.Simulator) and DDR by a bytearray that only flush()/invalidate() synchronize with
the CPU's view of a buffer (as on the board, where the PL reads DDR behind the caches).

Overlay(bitfile) reads `<bitfile stem>.json`: {"design": {DesignPoint fields}, "clock_mhz": 100,
"ip": "jb_accel_0"} in place of the .hwh. Rails PS / PL / DDR report power that follows the
accelerator's activity, so a recording shows the PL rail rise while it runs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

__version__ = "3.0-standin"
_PAGE = 4096


class _Memory:
    """The board's DDR as the PL sees it: physical addresses from 0 (the model's DDR is 0-based)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def alloc(self, nbytes: int) -> int:
        with self.lock:
            addr = len(self.data)
            self.data.extend(bytes((nbytes + _PAGE - 1) // _PAGE * _PAGE))
            return addr


_MEM = _Memory()


class PynqBuffer(np.ndarray):
    """pynq.buffer.PynqBuffer: an ndarray in contiguous memory with its physical address."""

    physical_address: int

    def flush(self) -> None:
        a = self.physical_address
        _MEM.data[a:a + self.nbytes] = self.tobytes()

    def invalidate(self) -> None:
        a = self.physical_address
        self.view(np.uint8).reshape(-1)[:] = np.frombuffer(bytes(_MEM.data[a:a + self.nbytes]), np.uint8)

    def freebuffer(self) -> None:
        pass  # the stand-in never reuses addresses: a use after free still reads the old bytes

    close = freebuffer


def allocate(shape, dtype=np.uint32, **_kw) -> PynqBuffer:
    arr = np.zeros(shape, dtype=dtype)
    buf = arr.view(PynqBuffer)
    buf.physical_address = _MEM.alloc(arr.nbytes)
    return buf


class _Activity:
    busy_until = 0.0  # monotonic time until which the PL counts as busy (the run's modeled duration)


class _AccelIP:
    """The accelerator's AXI-Lite register file: writes land in the model's registers; CTRL start runs the
    model on a copy of DDR and writes DDR back, as the AXI master would."""

    def __init__(self, design: dict, clock_hz: float) -> None:
        from targets.fpga.design import DesignPoint
        from targets.fpga.sim import Simulator

        self.sim = Simulator(DesignPoint(**design))
        self.clock_hz = clock_hz
        self.regs: dict[int, int] = {}
        self.runs = 0

    def write(self, offset: int, value: int) -> None:
        offset, value = int(offset), int(value) & 0xFFFFFFFF
        if offset == 0x00 and value & 1:
            self._start()
        else:
            self.regs[offset] = value

    def read(self, offset: int) -> int:
        return self.sim.reg_read(int(offset))

    def _start(self) -> None:
        lib, h = self.sim._lib, self.sim._h
        lib.jb_reset(h)
        with _MEM.lock:
            image = bytes(_MEM.data)
        lib.jb_ddr_resize(h, len(image))
        lib.jb_ddr_write(h, 0, image, len(image))
        for reg, v in sorted(self.regs.items()):
            self.sim.reg_write(reg, v)
        self.sim.reg_write(0x00, 1)
        n = int(lib.jb_run(h, 1 << 34))
        if n < 0:
            raise RuntimeError(f"stand-in: the model stopped ({n}): the accelerator bus would hang here")
        out = bytearray(len(image))
        import ctypes

        buf = (ctypes.c_char * len(image)).from_buffer(out)
        lib.jb_ddr_read(h, 0, buf, len(image))
        with _MEM.lock:
            _MEM.data[:len(out)] = out
        self.runs += 1
        _Activity.busy_until = max(_Activity.busy_until, time.monotonic()) + n / self.clock_hz


class Overlay:
    def __init__(self, bitfile: str, download: bool = True, **_kw) -> None:
        spec = json.loads(Path(bitfile).with_suffix(".json").read_text())
        Clocks.fclk0_mhz = float(spec.get("clock_mhz", 100.0))
        self.bitfile_name = str(bitfile)
        ip = spec.get("ip", "jb_accel_0")
        setattr(self, ip, _AccelIP(spec["design"], Clocks.fclk0_mhz * 1e6))
        self.ip_dict = {ip: {"type": "joulebench:user:jb_accel_axi:1.0", "phys_addr": 0xA0000000}}


class Clocks:
    fclk0_mhz = 100.0


class _Sensor:
    def __init__(self, rail: str, idle_w: float, busy_w: float) -> None:
        self.parents = (rail,)
        self.name = "power"
        self.rail, self.idle_w, self.busy_w = rail, idle_w, busy_w

    @property
    def value(self) -> float:
        return self.busy_w if time.monotonic() < _Activity.busy_until else self.idle_w


class Rail:
    def __init__(self, name: str, idle_w: float, busy_w: float) -> None:
        self.name = name
        self.power = _Sensor(name, idle_w, busy_w)


def get_rails(config=None) -> dict[str, Rail]:
    # ZCU104-like rails: PS (full-power domain), PL (VCCINT), DDR (PS DDR4); watts idle, busy
    return {"PS": Rail("PS", 1.10, 1.25), "PL": Rail("PL", 0.40, 1.60), "DDR": Rail("DDR", 0.30, 0.55)}


class DataRecorder:
    """pynq.pmbus.DataRecorder: samples its sensors every `interval` s in a thread; `frame` is a DataFrame
    indexed by timestamp with a `Mark` column (incremented by mark()) and one `<rail>_<sensor>` column each."""

    def __init__(self, *sensors) -> None:
        import pandas as pd

        self._pd = pd
        self._sensors = sensors
        self._rows: list[tuple] = []
        self._mark = 0
        self._lock = threading.Lock()  # timestamps stay in row order across the sampler and mark()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frame = pd.DataFrame(columns=["Mark", *self._columns()])

    def _columns(self) -> list[str]:
        return [f"{s.parents[0]}_{s.name}" for s in self._sensors]

    def _sample(self) -> None:
        with self._lock:
            self._rows.append((self._pd.Timestamp.now(), self._mark, *(s.value for s in self._sensors)))

    def record(self, interval: float) -> None:
        self._stop.clear()

        def loop() -> None:
            while True:
                self._sample()
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def mark(self) -> int:
        self._mark += 1
        self._sample()  # the board's copy of the event lands on a row of its own
        return self._mark

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        idx = [r[0] for r in self._rows]
        self.frame = self._pd.DataFrame([r[1:] for r in self._rows], index=idx, columns=["Mark", *self._columns()])

    def reset(self) -> None:
        self._rows.clear()
