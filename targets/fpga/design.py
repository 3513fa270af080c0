"""Design point of the accelerator: array shape, precisions and on-chip buffer depths.

The clock is not part of a design point: the same RTL runs at whatever frequency a board closes timing
at, and cycles (simulated or read from the hardware counter) are converted to time elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from targets.fpga import FpgaError

RTL_DIR = Path(__file__).resolve().parent / "rtl"
RTL_FILES = ("jb_accel.v", "jb_requant.v", "jb_ram.v")
TOP = "jb_accel"

# weight mode -> (RTL code, bits per stored level, level range)
WEIGHT_MODES: dict[str, tuple[int, int, tuple[int, int]]] = {
    "int16": (0, 16, (-32768, 32767)),
    "int8": (1, 8, (-128, 127)),
    "int4": (2, 4, (-8, 7)),
    "ternary": (3, 2, (-1, 1)),
    "binary": (4, 1, (-1, 1)),
}
ACT_BITS = (8, 16)
DESC_BEATS = 13  # descriptor size in 64-bit beats (jb_accel.v NDESC)
PIPE_DEPTH = 6  # issue -> capture (S0..S5, capture in the cycle after S5)
EPI_DEPTH = 4  # requantization stages between the drain and the DDR write port


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


@dataclass(frozen=True)
class DesignPoint:
    tm: int = 16  # output channels per row-block (array rows)
    tn: int = 16  # output-pixel lanes (array columns)
    weight_mode: str = "int8"
    act_bits: int = 8
    in_depth: int = 2048  # 64-bit rows per input bank (each lane has its own copy)
    w_depth: int = 8192  # weight words (one kept column of a row-block: tm levels)
    idx_depth: int = 8192  # index-table entries
    rb_depth: int = 64  # row-blocks whose epilogue constants fit on chip

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> FpgaError:
            return FpgaError(f"design point: {name}={getattr(self, name)!r} {why}")

        if self.weight_mode not in WEIGHT_MODES:
            raise bad("weight_mode", f"is not one of {', '.join(WEIGHT_MODES)}")
        if self.act_bits not in ACT_BITS:
            raise bad("act_bits", "must be 8 or 16")
        if not (isinstance(self.tm, int) and _pow2(self.tm) and self.tm <= 64):
            raise bad("tm", "must be a power of two from 1 to 64")
        if not (isinstance(self.tn, int) and 1 <= self.tn <= 64):
            raise bad("tn", "must be an integer from 1 to 64")
        for name, lo, hi in (("in_depth", 256, 1 << 20), ("w_depth", 2 * self.words_per_row, 1 << 20),
                             ("idx_depth", 4, 1 << 16), ("rb_depth", 2, 4096)):
            v = getattr(self, name)
            if not (isinstance(v, int) and _pow2(v) and lo <= v <= hi):
                raise bad(name, f"must be a power of two from {lo} to {hi}")

    # ------------------------------------------------------------------ derived figures
    @property
    def mode_code(self) -> int:
        return WEIGHT_MODES[self.weight_mode][0]

    @property
    def wbits(self) -> int:
        return WEIGHT_MODES[self.weight_mode][1]

    @property
    def level_range(self) -> tuple[int, int]:
        return WEIGHT_MODES[self.weight_mode][2]

    @property
    def words_per_row(self) -> int:
        """Weight words per 64-bit weight-RAM row (narrow words share a row)."""
        ww = self.tm * WEIGHT_MODES[self.weight_mode][1]
        return 1 if ww >= 64 else 64 // ww

    @property
    def channels_per_beat(self) -> int:
        return 64 // self.act_bits

    @property
    def requant_lanes(self) -> int:
        return min(self.tm, self.channels_per_beat)

    @property
    def drain_beats(self) -> int:
        """Output beats (cycles) to drain one step's TM x TN accumulators."""
        return self.tn * (self.tm // self.requant_lanes)

    @property
    def acc_bits(self) -> int:
        """Accumulator width of a cell (jb_accel.v ACC_W): 32 for int16/int8, exact and narrower otherwise."""
        xw = self.act_bits + 1
        kb = self.idx_depth.bit_length()  # $clog2(IDX_DEPTH + 1)
        code = self.mode_code
        if code <= 1:
            return 32
        if code == 2:
            return min(32, self.wbits + xw + kb)
        return min(32, xw + kb)

    @property
    def lanes(self) -> int:
        return self.tm * self.tn

    def verilog_params(self) -> dict[str, int]:
        return {"TM": self.tm, "TN": self.tn, "WMODE": self.mode_code, "ABITS": self.act_bits,
                "IN_DEPTH": self.in_depth, "W_DEPTH": self.w_depth, "IDX_DEPTH": self.idx_depth,
                "RB_DEPTH": self.rb_depth}

    def key(self) -> str:
        """Stable hash of the design point (not of the RTL: caches add the sources' hash)."""
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=8).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.weight_mode}-a{self.act_bits}-{self.tm}x{self.tn}"


def rtl_sources() -> list[Path]:
    return [RTL_DIR / f for f in RTL_FILES]


def rtl_digest(*extra: bytes) -> str:
    """Content hash of the RTL sources (plus anything else a cached build depends on)."""
    h = hashlib.blake2b(digest_size=12)
    for p in rtl_sources():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    for e in extra:
        h.update(e)
    return h.hexdigest()
