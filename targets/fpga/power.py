"""fpga-power@1: modeled board power and energy per inference of an accelerator on a Zynq board.

    P = P_static + P_pl + P_ddr + P_arm
    P_pl  = k_pl * (f_clk / 100 MHz) * alpha * F       F = sum over LUT, FF, DSP, BRAM36, URAM of used / reference
    P_ddr = e_ddr * 8 * bytes_per_second                alpha = busy fraction of the MAC array * non-zero share
    P_arm = p_arm * busy ARM cores

F is the share of a reference device's fabric the design occupies (ZCU102's XCZU9EG; URAM against the ZCU104's
XCZU7EV), each resource class weighted equally: no source publishes per-resource watts, so the split between
classes is an assumption and only the overall scale k_pl is fitted. e_ddr is fixed from Horowitz (ISSCC 2014);
k_pl and p_arm are fitted by non-negative least squares to published measured board power (published.toml).
Energy per inference integrates P over the accelerator phase and the ARM phase. See docs/models.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import nnls

from targets.devices.catalog import FpgaBoard, Published, load, load_published
from targets.fpga.latency import AcceleratorTime, ArmTime

MODEL = "fpga-power"
VERSION = 1
PROVENANCE = f"modeled:{MODEL}@{VERSION}"
F_REF_HZ = 100e6

# DRAM access energy, Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014:
# 1.3-2.6 nJ per 64-bit access = 20-40 pJ/bit (DDR3 era, 45 nm). The low end is taken for the DDR4/LPDDR4
# of these boards. Fixed, not fitted: the published points do not separate DDR from fabric power.
E_DDR_J_PER_BIT = 20e-12


@dataclass(frozen=True)
class Resources:
    lut: float
    ff: float
    dsp: float
    bram36: float
    uram: float = 0.0

    def fabric_share(self) -> float:
        """F: the design's share of the reference fabric, summed over resource classes."""
        ref = _reference()
        return sum(getattr(self, k) / ref[k] for k in ("lut", "ff", "dsp", "bram36", "uram"))


@lru_cache(maxsize=1)
def _reference() -> dict[str, float]:
    cat = load()
    zu9, zu7 = cat.board("zcu102").part, cat.board("zcu104").part
    return {"lut": zu9.lut.value, "ff": zu9.ff.value, "dsp": zu9.dsp.value, "bram36": zu9.bram36.value,
            "uram": zu7.uram.value}


@dataclass(frozen=True)
class Activity:
    """Switching activity measured in simulation."""

    busy: float  # fraction of the accelerator time the MAC array computes
    nonzero: float = 1.0  # fraction of non-zero operands reaching the MACs (zeros do not toggle the datapath)

    def __post_init__(self) -> None:
        if not (0 <= self.busy <= 1 and 0 <= self.nonzero <= 1):
            raise ValueError(f"activity fractions must be in [0, 1], got busy={self.busy}, nonzero={self.nonzero}")

    @property
    def alpha(self) -> float:
        return self.busy * self.nonzero


@dataclass(frozen=True)
class Coefficients:
    k_pl_w: float  # W at 100 MHz, alpha = 1, for a design the size of the reference fabric (F = 1)
    p_arm_w: float  # W per busy ARM core above idle
    e_ddr_j_per_bit: float = E_DDR_J_PER_BIT
    fitted_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PowerBreakdown:
    static_w: float
    pl_w: float
    ddr_w: float
    arm_w: float

    @property
    def total_w(self) -> float:
        return self.static_w + self.pl_w + self.ddr_w + self.arm_w

    @property
    def active_w(self) -> float:
        return self.total_w - self.static_w


def pl_power(res: Resources, clock_hz: float, activity: Activity, coeffs: Coefficients) -> float:
    return coeffs.k_pl_w * (clock_hz / F_REF_HZ) * activity.alpha * res.fabric_share()


def power(*, static_w: float, res: Resources, clock_hz: float, activity: Activity, bytes_per_s: float,
          arm_busy_cores: float, coeffs: Coefficients | None = None) -> PowerBreakdown:
    """Average board power while the accelerator runs with the given activity and DDR traffic."""
    c = coeffs or fitted()
    if clock_hz <= 0 or bytes_per_s < 0 or arm_busy_cores < 0 or static_w < 0:
        raise ValueError("clock_hz must be > 0; bytes_per_s, arm_busy_cores and static_w >= 0")
    return PowerBreakdown(static_w=static_w, pl_w=pl_power(res, clock_hz, activity, c),
                          ddr_w=c.e_ddr_j_per_bit * 8 * bytes_per_s, arm_w=c.p_arm_w * arm_busy_cores)


def static_power(board: FpgaBoard, measured_idle_w: float | None = None) -> float:
    """The static term: a measured idle of the board with the design loaded if given, else the board's base."""
    if measured_idle_w is not None:
        return measured_idle_w
    if board.power.idle_w is not None:
        return board.power.idle_w.value
    if board.power.base_w is not None:
        return board.power.base_w.value
    raise ValueError(f"{board.name}: no published idle or base power in the catalog; pass measured_idle_w")


@dataclass(frozen=True)
class Energy:
    """Energy of one inference: total and idle-subtracted (comparable to measured ∫(P - P_idle) dt)."""

    joules: float
    active_joules: float
    seconds: float
    accelerator_power: PowerBreakdown
    arm_power: PowerBreakdown
    coefficients: Coefficients
    provenance: str = PROVENANCE

    def assumptions(self) -> dict:
        return {"accelerator_power": asdict(self.accelerator_power), "arm_power": asdict(self.arm_power),
                "coefficients": asdict(self.coefficients), "seconds": self.seconds}


def energy_per_inference(*, accel: AcceleratorTime, res: Resources, activity: Activity, static_w: float,
                         arm: ArmTime | None = None, coeffs: Coefficients | None = None) -> Energy:
    """∫P dt over one inference: the accelerator phase (fabric + DDR + static; `activity.busy` is the MAC array's
    busy share of that phase), then the ARM phase (ARM cores + static, fabric idle). Phases run one after
    another, as in a batch-1 pipeline where the ARM waits for the accelerator and vice versa."""
    c = coeffs or fitted()
    t_acc = accel.seconds
    p_acc = power(static_w=static_w, res=res, clock_hz=accel.clock_hz, activity=activity,
                  bytes_per_s=accel.bytes_moved / t_acc if t_acc > 0 else 0.0, arm_busy_cores=0.0, coeffs=c)
    t_arm = arm.seconds if arm is not None else 0.0
    p_arm = PowerBreakdown(static_w=static_w, pl_w=0.0, ddr_w=0.0,
                           arm_w=c.p_arm_w * (arm.cores if arm is not None else 0))
    joules = p_acc.total_w * t_acc + p_arm.total_w * t_arm
    active = p_acc.active_w * t_acc + p_arm.active_w * t_arm
    return Energy(joules=joules, active_joules=active, seconds=t_acc + t_arm, accelerator_power=p_acc,
                  arm_power=p_arm, coefficients=c)


# ------------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class PointInputs:
    """The model's inputs for one published point, derived from published.toml (docs/models.md explains each)."""

    key: str
    scored: bool
    static_w: float  # measured idle with the design loaded (base power where no idle was published)
    full_w: float
    res: Resources
    clock_hz: float
    alpha: float  # fps * lat_comp / cores: the share of the DPU array busy at batch 1
    bytes_per_s: float  # avg per-core bandwidth * lat_comp * fps
    arm_busy: float  # 1 - fps * lat_comp: the single batch-1 thread runs on the ARM while the DPU waits
    fps: float
    gop: float

    @property
    def increment_w(self) -> float:
        return self.full_w - self.static_w

    def features(self, e_ddr: float = E_DDR_J_PER_BIT) -> tuple[float, float, float]:
        """(x_pl, x_arm, ddr_w): increment = k_pl * x_pl + p_arm * x_arm + ddr_w."""
        x_pl = (self.clock_hz / F_REF_HZ) * self.alpha * self.res.fabric_share()
        return x_pl, self.arm_busy, e_ddr * 8 * self.bytes_per_s


def point_inputs(pub: Published | None = None) -> list[PointInputs]:
    pub = pub or load_published()
    out = []
    for key, p in pub.points.items():
        d = pub.designs[p.design]
        res = Resources(lut=d.lut.value, ff=d.ff.value, dsp=d.dsp.value, bram36=d.bram36.value,
                        uram=d.uram.value if d.uram else 0.0)
        t_comp = p.lat_comp_ms.value / 1e3
        busy = min(1.0, p.fps.value * t_comp)
        static = p.idle_w.value if p.idle_w is not None else p.base_w.value if p.base_w is not None else 0.0
        out.append(PointInputs(key=key, scored=p.scored, static_w=static, full_w=p.full_w.value, res=res,
                               clock_hz=d.clock_mhz.value * 1e6, alpha=busy / d.cores.value,
                               bytes_per_s=d.avg_bw_mbps[p.bw].value * 1e6 * t_comp * p.fps.value,
                               arm_busy=1.0 - busy, fps=p.fps.value, gop=p.gop.value))
    return out


def fit(points: list[PointInputs], e_ddr: float = E_DDR_J_PER_BIT) -> Coefficients:
    """Non-negative least squares of the measured increments (full - idle) for k_pl and p_arm."""
    pts = [p for p in points if p.scored]
    if len(pts) < 2:
        raise ValueError(f"need at least 2 scored points to fit 2 coefficients, got {len(pts)}")
    a = np.array([p.features(e_ddr)[:2] for p in pts])
    b = np.array([p.increment_w - p.features(e_ddr)[2] for p in pts])
    (k_pl, p_arm), _ = nnls(a, b)
    return Coefficients(k_pl_w=float(k_pl), p_arm_w=float(p_arm), e_ddr_j_per_bit=e_ddr,
                        fitted_on=tuple(p.key for p in pts))


def predict(point: PointInputs, coeffs: Coefficients) -> float:
    """Modeled full board power of a published point."""
    x_pl, x_arm, ddr_w = point.features(coeffs.e_ddr_j_per_bit)
    return point.static_w + coeffs.k_pl_w * x_pl + coeffs.p_arm_w * x_arm + ddr_w


@dataclass(frozen=True)
class LooResult:
    key: str
    published_w: float
    predicted_w: float  # refit without this point, then predicted
    fitted_w: float  # with all points in the fit
    rel_error: float  # (predicted - published) / published, on total board power
    increment_rel_error: float  # the same on the increment above idle, the part the model actually explains


def leave_one_out(points: list[PointInputs] | None = None) -> list[LooResult]:
    pts = [p for p in (points or point_inputs()) if p.scored]
    full = fit(pts)
    out = []
    for p in pts:
        c = fit([q for q in pts if q.key != p.key])
        pred = predict(p, c)
        out.append(LooResult(key=p.key, published_w=p.full_w, predicted_w=pred, fitted_w=predict(p, full),
                             rel_error=(pred - p.full_w) / p.full_w,
                             increment_rel_error=(pred - p.full_w) / p.increment_w))
    return out


def leave_one_board_out(points: list[PointInputs] | None = None) -> dict[str, float]:
    """Worst relative error on total power per board when that board's points are all left out of the fit:
    the harsher test, since points of one design share their resources and board."""
    pts = [p for p in (points or point_inputs()) if p.scored]
    board = {p.key: p.key.split("-")[0] for p in pts}
    out = {}
    for b in sorted(set(board.values())):
        c = fit([p for p in pts if board[p.key] != b])
        out[b] = max(abs(predict(p, c) - p.full_w) / p.full_w for p in pts if board[p.key] == b)
    return out


@lru_cache(maxsize=1)
def fitted() -> Coefficients:
    """Coefficients fitted to every scored published point (the model's defaults)."""
    return fit(point_inputs())
