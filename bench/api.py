"""The public API of joulebench: everything a backend (target) or power-meter plugin imports, and nothing else.

A backend subclasses `Target` (compile a Variant into an artifact directory, open a `Session` on a
device) and `Session` (load an `Artifact` into an `Executor`); the runner drives the measurement
protocol around them. A meter subclasses `Meter` (start before the idle window, stop after the
timed window, return a `PowerTrace`). Register either through an entry point (`joulebench.targets`
or `joulebench.meters`); `docs/plugins.md` walks through a complete example, and
`bench.contract.check_target(cls)` runs the contract every installed backend passes.

Every figure carries its provenance, one of three kinds (see `provenance`):
  measured:<timer or meter>   read from real hardware by a clock or sensor
  simulated:<simulator>       counted by executing the real design (deterministic)
  modeled:<model>@<version>   predicted by a documented model whose inputs are stored with the row
Units are SI unless a name says otherwise: seconds, watts, joules, hertz.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pruning.variant import Variant, cache_dir

__all__ = [
    "API_VERSION", "KINDS", "Artifact", "DeviceSnapshot", "EnergyResult", "Estimate", "Executor", "Figure",
    "LocalShell", "Measurement", "Meter", "MeterContext", "MeterError", "NoOptions", "NotRunnable", "PolledMeter", "PowerTrace", "ProtocolSpec",
    "Session", "Shell", "Target", "TargetError", "Variant", "Window", "cache_dir", "check_provenance", "did_you_mean", "kind_of",
    "time_callable",
]

API_VERSION = 1
KINDS = ("measured", "simulated", "modeled")
Kind = Literal["measured", "simulated", "modeled"]


# ---------------------------------------------------------------------------------------------------- errors
def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `candidates`, or '' when none is close: for one-line
    errors about a near-miss name (a key, a target, a meter, an option, a layer)."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class TargetError(RuntimeError):
    """A backend problem with a one-line message: missing tool, device, bad option, or a failed build."""


class NotRunnable(TargetError):
    """Built, but cannot run here (no device, no NDK): the cell's status is 'compiled', not failed."""


class MeterError(RuntimeError):
    """A meter that cannot be used here: the message says what is missing and how to get it."""


# ---------------------------------------------------------------------------------------------------- provenance
_PROVENANCE = re.compile(r"^(measured|simulated):[A-Za-z0-9_.+\-/]+$|^modeled:[A-Za-z0-9_.+\-/]+@[A-Za-z0-9_.\-]+$")


def check_provenance(label: str) -> str:
    """`label` if it is a valid provenance (`measured:x`, `simulated:x`, `modeled:x@version`), else ValueError."""
    if not _PROVENANCE.match(label or ""):
        raise ValueError(f"provenance '{label}' must be measured:<timer or meter>, simulated:<simulator> "
                         "or modeled:<model>@<version>")
    return label


def kind_of(label: str) -> str:
    """'measured', 'simulated' or 'modeled' from a provenance label."""
    return check_provenance(label).partition(":")[0]


@dataclass
class Figure:
    """One figure with where it came from. `assumptions`: every input a model used (clock in Hz,
    bandwidth in B/s, coefficients), stored with the result row so the figure can be recomputed."""

    value: float
    provenance: str
    assumptions: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_provenance(self.provenance)

    @property
    def kind(self) -> str:
        return kind_of(self.provenance)


@dataclass
class Estimate:
    """What a simulating or modeling executor reports for one inference instead of wall-clock samples.

    latency_s        seconds per inference (simulated or modeled; never the host's wall clock)
    energy_j         joules per inference, total (static and idle share included), or None
    idle_power_w     the device's idle power in W that the energy model assumes (gives the idle-subtracted
                     energy), or None
    details          deterministic counts behind the figures (e.g. cycles, bytes moved), each a Figure, stored
                     with the row
    """

    latency_s: Figure
    energy_j: Figure | None = None
    idle_power_w: float | None = None
    details: dict[str, Figure] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- power records
@dataclass(frozen=True)
class Window:
    """A span on the harness's monotonic clock (time.monotonic(), seconds) and the inferences run in it."""

    t0: float
    t1: float
    inferences: int = 0

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


@dataclass
class PowerTrace:
    """A meter's readings on the harness's monotonic clock: instantaneous power samples (W) or a
    cumulative energy counter (J, unwrapped). Energy over [t0, t1] (`energy`):
      counter          E(t1) - E(t0), the counter linearly interpolated between its samples
      sample-and-hold  each power sample holds until the next one (the default: never invents power)
      trapezoid        power linearly interpolated between samples (for smooth signals)"""

    meter: str
    t: np.ndarray  # seconds, harness monotonic clock, increasing
    watts: np.ndarray | None = None
    joules: np.ndarray | None = None  # cumulative, unwrapped
    method: str = "sample-and-hold"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        if (self.watts is None) == (self.joules is None):
            raise ValueError("a trace holds either power samples or an energy counter")
        if self.joules is not None:
            self.joules = np.asarray(self.joules, dtype=np.float64)
            self.method = "counter"
        else:
            self.watts = np.asarray(self.watts, dtype=np.float64)
        if len(self.t) and np.any(np.diff(self.t) < 0):
            raise ValueError(f"{self.meter}: trace timestamps are not monotonic")

    def samples_in(self, t0: float, t1: float) -> int:
        return int(np.count_nonzero((self.t >= t0) & (self.t <= t1)))

    def energy(self, t0: float, t1: float) -> float:
        """Joules consumed in [t0, t1]. Raises ValueError if the trace does not cover the window."""
        if len(self.t) < 2 or t0 < self.t[0] or t1 > self.t[-1] + self._hold():
            raise ValueError(f"{self.meter}: trace [{self.t[0] if len(self.t) else 'empty'}, "
                             f"{self.t[-1] if len(self.t) else ''}] does not cover window [{t0:.3f}, {t1:.3f}]")
        if self.joules is not None:
            return float(np.interp(t1, self.t, self.joules) - np.interp(t0, self.t, self.joules))
        if self.method == "trapezoid":
            inner = (self.t > t0) & (self.t < t1)
            ts = np.concatenate([[t0], self.t[inner], [t1]])
            ps = np.interp(ts, self.t, self.watts)
            return float(np.sum((ps[1:] + ps[:-1]) / 2 * np.diff(ts)))
        edges = np.concatenate([[t0], self.t[(self.t > t0) & (self.t < t1)], [t1]])
        idx = np.searchsorted(self.t, edges[:-1], side="right") - 1
        return float(np.sum(self.watts[np.clip(idx, 0, None)] * np.diff(edges)))

    def mean_power(self, t0: float, t1: float) -> float:
        return self.energy(t0, t1) / (t1 - t0)

    def _hold(self) -> float:
        # a held sample stays valid for one sampling interval past the last timestamp
        return float(np.median(np.diff(self.t))) if self.watts is not None and len(self.t) > 1 else 0.0


@dataclass
class EnergyResult:
    """Energy of the timed window from one meter. Energies in mJ per inference, powers in W."""

    meter: str
    method: str
    idle_power_w: float
    avg_power_w: float
    energy_mj_per_inf: float  # idle-subtracted (dynamic) energy per inference
    energy_mj_per_inf_ci: float  # half-width of the 95% CI over repeats (nan with one repeat)
    energy_total_mj_per_inf: float  # including idle power
    inf_per_j: float  # on total energy: what a battery sees
    power_samples: int
    per_repeat_mj: list[float]

    def gops_per_w(self, macs_per_inf: int) -> float:
        return 2 * macs_per_inf * 1e-9 * self.inf_per_j


# ---------------------------------------------------------------------------------------------------- devices
class Shell(Protocol):
    """A shell on a device (adb, ssh, or this machine): what a device-side power sampler runs over."""

    def run(self, cmd: str, timeout: float = 30) -> str:
        """Run `cmd` with sh on the device; its stdout. Raises on a non-zero exit."""

    def spawn(self, cmd: str) -> None:
        """Start `cmd` in the background on the device and return at once."""

    def pull(self, remote: str, local: str) -> None:
        """Copy a device file to this machine."""


class LocalShell:
    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def run(self, cmd: str, timeout: float = 30) -> str:
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"'{cmd}' failed ({r.returncode}): {r.stderr.strip()[:200]}")
        return r.stdout

    def spawn(self, cmd: str) -> None:
        # its own process group, so that close() also stops what the command started
        self._procs.append(subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))

    def pull(self, remote: str, local: str) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                p.wait(5)


@dataclass(frozen=True)
class MeterContext:
    """What a session offers the meters attached to its cells. A meter receives the fields its
    constructor accepts: `shell`, `root` (the device's sysfs root, e.g. '/' or a mounted tree) and
    `workdir` (a writable directory on the device for sampler output)."""

    shell: Shell | None = None
    root: str = "/"
    workdir: str | None = None

    def options(self) -> dict:
        return {k: v for k, v in (("shell", self.shell), ("root", self.root), ("workdir", self.workdir))
                if v is not None}


@dataclass
class DeviceSnapshot:
    """A device's state before or after a cell, for the throttle check and the record.
    Clocks in Hz by component (cpu0, gpu, fabric `pl0` ...), temperatures in degrees C by sensor,
    `charging` None where unknown; `info` holds free-form facts (model, governor, properties)."""

    cpu_hz: dict[str, float] = field(default_factory=dict)
    gpu_hz: dict[str, float] = field(default_factory=dict)
    fabric_hz: dict[str, float] = field(default_factory=dict)  # FPGA programmable-logic clocks
    temps_c: dict[str, float] = field(default_factory=dict)
    charging: bool | None = None
    info: dict = field(default_factory=dict)
    error: str | None = None  # why the snapshot could not be taken

    @property
    def empty(self) -> bool:
        return not (self.cpu_hz or self.gpu_hz or self.fabric_hz or self.temps_c) and self.charging is None

    def clocks(self) -> dict[str, float]:
        return {**{f"cpu.{k}": v for k, v in self.cpu_hz.items()}, **{f"gpu.{k}": v for k, v in self.gpu_hz.items()},
                **{f"fabric.{k}": v for k, v in self.fabric_hz.items()}}


# ---------------------------------------------------------------------------------------------------- protocol
class ProtocolSpec(BaseModel):
    """The measurement protocol of a campaign (`[protocol]`), all durations in seconds."""

    model_config = ConfigDict(extra="forbid")

    warmup_runs: int = Field(5, ge=0)
    warmup_s: float = Field(0.5, ge=0)
    min_runs: int = Field(20, ge=1)
    min_duration_s: float = Field(1.0, ge=0)
    repeats: int = Field(3, ge=1)
    max_runs_per_repeat: int = Field(100_000, ge=1)
    cooldown_s: float = Field(0.0, ge=0)
    idle_s: float = Field(2.0, gt=0, description="idle-power window before the timed window (meters only)")
    min_power_samples: int = Field(20, ge=2, description="meter samples wanted per timed repeat")
    temp_limit_c: float = Field(85.0, description="a temperature at or above this flags throttling")
    freq_drop: float = Field(0.10, ge=0, lt=1, description="a clock falling by this fraction flags throttling")


class Executor(ABC):
    """A loaded artifact. Measuring executors implement `time_runs`; simulating or modeling ones
    implement `estimate` instead (the protocol then verifies once and does not repeat them)."""

    timer: str = "perf_counter"  # the clock behind time_runs, e.g. 'tvm.time_evaluator' -> measured:<timer>
    extra_runs_per_call: int = 0  # inferences a time_runs call runs beyond n (e.g. a discarded warm-up call)

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one inference on `x`; the output (compared with the reference before any figure)."""

    def time_runs(self, n: int) -> list[float]:
        """Run `n` inferences on the last input given to `infer`; seconds per inference, one per run."""
        raise NotImplementedError(f"{type(self).__name__} does not time runs")

    def estimate(self) -> Estimate | None:
        """Simulated or modeled figures of the last `infer`, or None for an executor that is timed."""
        return None


@dataclass
class Measurement:
    """The outcome of one cell's protocol run. Latency samples in seconds per inference."""

    status: str  # ok | failed
    verified: bool
    max_abs_err: float
    tolerance: float
    message: str = ""
    samples_s: list[list[float]] = field(default_factory=list)  # one list per repeat (measured only)
    timer: str = ""
    windows: list[Window] = field(default_factory=list)  # timed repeats, harness monotonic clock
    idle: Window | None = None
    energy: list[EnergyResult] = field(default_factory=list)  # one per meter, the first is primary
    traces: list[PowerTrace] = field(default_factory=list)
    energy_note: str = ""  # why there is no energy figure, or a caveat on it
    estimate: Estimate | None = None  # simulated / modeled figures instead of samples and traces
    before: DeviceSnapshot = field(default_factory=DeviceSnapshot)
    after: DeviceSnapshot = field(default_factory=DeviceSnapshot)

    @property
    def latency_provenance(self) -> str:
        if self.estimate is not None:
            return self.estimate.latency_s.provenance
        return f"measured:{self.timer}" if self.timer else ""

    @property
    def energy_provenance(self) -> str:
        if self.estimate is not None:
            return self.estimate.energy_j.provenance if self.estimate.energy_j else ""
        return f"measured:{self.energy[0].meter}" if self.energy else ""

    @property
    def provenance(self) -> str:
        return ", ".join(p for p in (self.latency_provenance, self.energy_provenance) if p)


def time_callable(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call wall time (s) of `fn` on the monotonic perf counter, for executors without their own timer."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) * 1e-9)
    return out


# ---------------------------------------------------------------------------------------------------- meters
class Meter(ABC):
    """A power meter. The protocol calls check() (raise MeterError if unusable), start() before the
    idle window, mark(label) at each protocol event, and stop() after the timed window, which returns
    a PowerTrace on the harness's monotonic clock whatever clock the meter's own timestamps use."""

    name: ClassVar[str]
    unit: ClassVar[str]  # "W" (power samples) or "J" (cumulative energy counter)
    clock: ClassVar[str]  # where timestamps come from: host-monotonic | device | external
    period_s: float = 0.05  # update period (s): the harness lengthens windows to get enough samples

    @classmethod
    def availability(cls, **options) -> tuple[bool, str]:
        """(readable here, why not) for the meter built with `options`."""
        try:
            cls(**options).check()
        except MeterError as exc:
            return False, str(exc)
        except TypeError as exc:
            return False, f"bad options for meter {cls.name}: {exc}"
        return True, ""

    def check(self) -> None:  # noqa: B027 - raise MeterError when unusable
        """Raise MeterError if the meter cannot be read here."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> PowerTrace: ...

    def mark(self, label: str) -> None:  # noqa: B027 - only meters on another clock need the harness's events
        """The harness reached event `label` (idle_start, idle_end, timed_start, timed_end) now."""

    @property
    def provenance(self) -> str:
        return f"measured:{self.name}"


class PolledMeter(Meter):
    """A meter read on the host by a background thread every `period_s` (sysfs counters, NVML)."""

    clock = "host-monotonic"

    def __init__(self, period_s: float = 0.02) -> None:
        self.period_s = period_s
        self._t: list[float] = []
        self._v: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def read(self):
        """Current power (W), or raw counter value(s) that `to_trace` turns into joules."""

    def start(self) -> None:
        self.check()
        self._t, self._v = [], []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name=f"meter-{self.name}", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        v = self.read()
        self._t.append(time.monotonic())
        self._v.append(v)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return self.to_trace(np.array(self._t), np.array(self._v))

    def to_trace(self, t: np.ndarray, v: np.ndarray) -> PowerTrace:
        return PowerTrace(self.name, t, watts=v) if self.unit == "W" else PowerTrace(self.name, t, joules=v)


# ---------------------------------------------------------------------------------------------------- backends
class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Artifact:
    """A compiled variant: `path` holds the files `Target.compile` wrote and `manifest.json`."""

    target: str
    path: Path
    manifest: dict
    variant: Variant

    def file(self, name: str) -> Path:
        return self.path / name


class Session(ABC):
    """A connection to one device of a target. The runner takes `snapshot()` before and after each
    cell, calls `load`, drives the protocol on the Executor, tells the session about protocol events
    (`on_event`), and asks `healthy()` after a failure: an unhealthy session is closed and reopened
    for the next cell."""

    device: str = "host"  # how rows name the device

    def snapshot(self) -> DeviceSnapshot:
        return DeviceSnapshot()

    @abstractmethod
    def load(self, artifact: Artifact) -> Executor: ...

    def meter_context(self) -> MeterContext:
        """The shell, sysfs root and work directory the cell's meters may use."""
        return MeterContext()

    def on_event(self, label: str, t: float) -> None:  # noqa: B027 - most sessions record nothing
        """Protocol event `label` (idle_start, idle_end, timed_start, timed_end) at monotonic time `t` (s):
        e.g. mark a board-side power recorder."""

    def healthy(self) -> bool:
        """False when the device dropped (the runner then reopens it for the next cell)."""
        return True

    def close(self) -> None:  # noqa: B027 - most sessions hold nothing
        pass


class Target(ABC):
    """A backend. `figures` says what kind of latency/energy figures its executors produce."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    figures: ClassVar[Kind] = "measured"

    def availability(self) -> tuple[bool, str]:
        """(usable here, note): (False, why) if not; (True, why) if it only compiles here."""
        return True, ""

    def accepts(self, variant: Variant) -> str | None:
        """None if this target can run `variant`, else the reason it cannot (the cell is skipped)."""
        return None

    def parse_options(self, options: dict) -> BaseModel:
        try:
            return self.Options(**options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown option{did_you_mean(key, self.Options.model_fields)} (accepted: " \
                      f"{', '.join(self.Options.model_fields) or 'none'})"
            raise TargetError(f"{self.name}: option '{key}': {msg}") from None

    def preflight(self, options: BaseModel, devices: list[str], compressions: list = ()) -> None:  # noqa: B027
        """Checked when a campaign loads, before anything runs: raise TargetError (one line) for what
        would fail only later, e.g. a missing device-side binary for the `devices` this entry names, or
        a compression (the campaign's `pruning.spec.CompressionSpec` entries) these options cannot build."""

    def version(self) -> str:
        """Part of the artifact cache key: change it when compiled output would change."""
        return "1"

    def default_meters(self) -> list[str | dict]:
        """Meters attached when a campaign names none; each is used only if it works here."""
        return []

    @abstractmethod
    def compile(self, variant: Variant, options: BaseModel, workdir: Path) -> dict:
        """Write the artifact's files into `workdir`; return its manifest (JSON-serializable)."""

    @abstractmethod
    def open(self, device: str | None, options: BaseModel) -> Session:
        """A session on `device` (None: the target's default); raise NotRunnable if it cannot run here."""
