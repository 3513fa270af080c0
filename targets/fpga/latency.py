"""fpga-latency@1: modeled seconds per inference from simulated RTL cycles, DDR traffic and ARM-side work.

Accelerator: RTL cycles (`simulated:verilator`) / f_clk, with the DMA phases re-timed against the board's
DDR: a transfer cannot finish before `bytes / (peak bandwidth * efficiency)`. Double-buffered designs overlap
that DDR time with compute; otherwise DMA phases add to it. ARM-side ops (pooling, adds, first/last layers at
higher precision) follow a roofline of the board's cores. Formulas, inputs and sources: docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from targets.devices.catalog import FpgaBoard
from targets.devices.catalog import board as catalog_board

MODEL = "fpga-latency"
VERSION = 1
PROVENANCE = f"modeled:{MODEL}@{VERSION}"

# Achievable share of peak DDR bandwidth. UG585 (Zynq-7000 TRM, sec. 22.3.2): "the DDR controller was designed
# to have a maximum efficiency of approximately 75%" (measured 79-97 % for HP-port sequential/random patterns).
# The Zynq UltraScale+ PS DDR controller publishes no such figure; the same planning value is used there.
DDR_EFFICIENCY = 0.75


def _board(b: FpgaBoard | str) -> FpgaBoard:
    return b if isinstance(b, FpgaBoard) else catalog_board(b)


@dataclass(frozen=True)
class AcceleratorTime:
    """Modeled accelerator seconds per inference and the assumptions to store with a result row."""

    seconds: float
    compute_s: float  # cycles_total / f_clk: the RTL timeline as simulated
    ddr_s: float  # bytes / (peak * efficiency)
    cycles_total: int
    cycles_compute: int
    cycles_dma: int
    bytes_moved: int
    clock_hz: float
    peak_bandwidth_bytes_s: float
    ddr_efficiency: float
    double_buffered: bool
    board: str
    bound: str  # "rtl" or "ddr": which of the two set the time
    provenance: str = PROVENANCE
    cycles_provenance: str = "simulated:verilator"

    def assumptions(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("seconds",)}


def accelerator_time(*, cycles_total: int, bytes_read: int, bytes_written: int, board: FpgaBoard | str,
                     clock_hz: float | None = None, cycles_compute: int | None = None,
                     cycles_dma: int | None = None, double_buffered: bool = False,
                     ddr_efficiency: float = DDR_EFFICIENCY) -> AcceleratorTime:
    """Seconds of one inference on the accelerator.

    double_buffered: t = max(cycles_total / f, t_ddr): transfers stream behind compute, so the slower of the
        RTL timeline and DDR sets the pace.
    otherwise: t = (cycles_total - cycles_dma) / f + max(cycles_dma / f, t_ddr): each DMA phase stalls compute
        and takes the longer of its simulated cycles and its DDR time. cycles_dma=None means the simulation did
        not time its transfers (an ideal port), so the whole t_ddr is added.
    clock_hz defaults to the board's default PL clock.
    """
    b = _board(board)
    f = float(clock_hz) if clock_hz is not None else b.pl.default_clock_mhz.value * 1e6
    if f <= 0 or cycles_total < 0 or bytes_read < 0 or bytes_written < 0:
        raise ValueError("clock_hz must be > 0 and cycles/bytes >= 0")
    if not 0 < ddr_efficiency <= 1:
        raise ValueError(f"ddr_efficiency must be in (0, 1], got {ddr_efficiency}")
    dma = int(cycles_dma) if cycles_dma is not None else 0
    if dma > cycles_total:
        raise ValueError(f"cycles_dma ({dma}) exceeds cycles_total ({cycles_total})")
    peak = b.memory.peak_bytes_per_s
    moved = int(bytes_read) + int(bytes_written)
    t_rtl = cycles_total / f
    t_ddr = moved / (peak * ddr_efficiency)
    if double_buffered:
        seconds = max(t_rtl, t_ddr)
        bound = "ddr" if t_ddr > t_rtl else "rtl"
    else:
        t_dma = dma / f
        seconds = (cycles_total - dma) / f + max(t_dma, t_ddr)
        bound = "ddr" if t_ddr > t_dma else "rtl"
    return AcceleratorTime(seconds=seconds, compute_s=t_rtl, ddr_s=t_ddr, cycles_total=int(cycles_total),
                           cycles_compute=int(cycles_compute if cycles_compute is not None else cycles_total),
                           cycles_dma=dma, bytes_moved=moved, clock_hz=f, peak_bandwidth_bytes_s=peak,
                           ddr_efficiency=ddr_efficiency, double_buffered=double_buffered, board=b.key,
                           bound=bound)


@dataclass(frozen=True)
class ArmOp:
    """An op left on the ARM cores: its fp32 FLOPs and the bytes it moves through DDR."""

    name: str
    flops: float
    bytes: float


@dataclass(frozen=True)
class ArmTime:
    seconds: float
    per_op_s: tuple[float, ...]
    cores: int
    peak_flops: float  # of the cores used
    bandwidth_bytes_s: float  # peak * memory efficiency
    compute_efficiency: float
    memory_efficiency: float
    overhead_s: float
    board: str
    provenance: str = PROVENANCE

    def assumptions(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("seconds", "per_op_s")}


def arm_time(ops: Iterable[ArmOp], board: FpgaBoard | str, *, cores: int = 1, compute_efficiency: float = 1.0,
             memory_efficiency: float = DDR_EFFICIENCY, overhead_s: float = 0.0) -> ArmTime:
    """Roofline time of ops run one after another on `cores` ARM cores.

    t_op = max(flops / (peak * compute_efficiency), bytes / (bandwidth * memory_efficiency)) + overhead_s.
    compute_efficiency = 1 is the roofline bound itself (Williams, Waterman, Patterson, "Roofline", CACM 2009):
    no published figure gives a typical efficiency of these cores, so by default the ARM time is a lower bound;
    pass a measured efficiency and per-op overhead where one exists.
    """
    b = _board(board)
    per_core = b.cpu.peak_fp32_flops_per_core
    if per_core is None:
        raise ValueError(f"{b.name}: no published fp32 peak for its {b.cpu.core} cores (catalog has none)")
    if not 1 <= cores <= b.cpu.cores.value:
        raise ValueError(f"{b.name} has {int(b.cpu.cores.value)} cores, asked for {cores}")
    if not (0 < compute_efficiency <= 1 and 0 < memory_efficiency <= 1) or overhead_s < 0:
        raise ValueError("efficiencies must be in (0, 1] and overhead_s >= 0")
    peak = per_core * cores
    bw = b.memory.peak_bytes_per_s * memory_efficiency
    per_op = tuple(max(op.flops / (peak * compute_efficiency), op.bytes / bw) + overhead_s for op in ops)
    return ArmTime(seconds=sum(per_op), per_op_s=per_op, cores=cores, peak_flops=peak, bandwidth_bytes_s=bw,
                   compute_efficiency=compute_efficiency, memory_efficiency=memory_efficiency,
                   overhead_s=overhead_s, board=b.key)


@dataclass(frozen=True)
class ConvLayer:
    """A conv layer for the loop-tiled design-space model: R x C output, M outputs, N inputs, K x K kernel."""

    r: int
    c: int
    m: int
    n: int
    k: int
    groups: int = 1  # independent groups computed one after another (AlexNet's two towers)

    @property
    def flops(self) -> int:
        return 2 * self.r * self.c * self.m * self.n * self.k * self.k * self.groups


def tiled_conv_cycles(layers: Sequence[ConvLayer], tm: int, tn: int) -> int:
    """Compute cycles of a Tm x Tn MAC array with one MAC per cycle each and a pipelined K x K loop:
    sum over layers of ceil(M/Tm) * ceil(N/Tn) * R * C * K^2 (Zhang et al., FPGA'15, computational roof)."""
    return sum(math.ceil(x.m / tm) * math.ceil(x.n / tn) * x.r * x.c * x.k * x.k * x.groups for x in layers)
