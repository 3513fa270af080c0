"""The measurement protocol, driven by the runner: verify once, warm up, then timed runs (min count and
duration) x repeats with meters around them; or, for a simulating/modeling executor, verify and take
its estimate once (a deterministic figure is never repeated for statistics).

Backends hand over an `Executor` (bench.api); this module owns the order of steps and the stopping
rules so every target is verified, timed and metered the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from bench.api import (
    Artifact,
    DeviceSnapshot,
    Executor,
    Measurement,
    Meter,
    ProtocolSpec,
    Session,
    TargetError,
    Window,
    kind_of,
)
from bench.power.trace import energy_per_inference
from bench.verify import check_output

OnEvent = Callable[[str, float], None]
EVENTS = ("idle_start", "idle_end", "timed_start", "timed_end")


def measure(session: Session, artifact: Artifact, spec: ProtocolSpec, meters: Sequence[Meter] = ()) -> Measurement:
    """One cell on an open session: snapshot, load, protocol, snapshot. A failure on a session that is
    no longer healthy (the device dropped) becomes one TargetError naming the device."""
    v = artifact.variant
    try:
        before = session.snapshot()
        # an artifact that executes below the variant's precision (e.g. a runtime's own int8) is judged as such
        precision = artifact.manifest.get("verify_precision", v.precision)
        m = run_protocol(session.load(artifact), v.example_input(), v.reference_output, precision, spec, meters,
                         session.on_event)
        m.before, m.after = before, session.snapshot()
    except TargetError:
        raise
    except Exception as exc:
        if session.healthy():
            raise
        text = str(exc).strip()
        raise TargetError(f"device {session.device} failed during the cell: {type(exc).__name__}: "
                          f"{text.splitlines()[-1][:200] if text else ''}") from None
    if m.before.charging or m.after.charging:
        m.energy_note = "; ".join(filter(None, [m.energy_note, "device charging during the cell: battery-based "
                                                "energy is under-reported"]))
    return m


def _event(meters: Sequence[Meter], on_event: OnEvent | None, label: str) -> None:
    t = time.monotonic()
    for m in meters:
        m.mark(label)
    if on_event is not None:
        on_event(label, t)


def run_protocol(ex: Executor, x: np.ndarray, reference: np.ndarray, precision: str, spec: ProtocolSpec,
                 meters: Sequence[Meter] = (), on_event: OnEvent | None = None) -> Measurement:
    """verify -> [estimate] | warm-up -> [meters on: idle window] -> timed repeats -> [meters off] -> cooldown."""
    check = check_output(np.asarray(ex.infer(x)), reference, precision)
    if not check.ok:
        # never time a wrong artifact: its speed means nothing
        return Measurement("failed", False, check.max_abs_err, check.tolerance, check.message)
    est = ex.estimate()
    if est is not None:
        for fig in (est.latency_s, est.energy_j, *est.details.values()):
            if fig is not None and kind_of(fig.provenance) == "measured":
                raise TargetError(f"{type(ex).__name__}.estimate() returned a 'measured:' figure; "
                                  "an estimate is simulated or modeled")
        return Measurement("ok", True, check.max_abs_err, check.tolerance, estimate=est)
    warm: list[float] = []
    t_end = time.monotonic() + spec.warmup_s
    while len(warm) < spec.warmup_runs or time.monotonic() < t_end:
        warm += ex.time_runs(1)
    est_s = float(np.median(warm)) if warm else ex.time_runs(1)[0]
    duration = spec.min_duration_s
    if meters:  # a slow meter gets a longer window rather than a noisy figure
        duration = max(duration, spec.min_power_samples * max(m.period_s for m in meters))
    n = max(spec.min_runs, math.ceil(duration / max(est_s, 1e-9)))
    n = min(n, spec.max_runs_per_repeat)
    idle = None
    for m in meters:
        m.start()
    try:
        if meters:
            # a few periods for background samplers to settle (the Android one waits for its first reading)
            time.sleep(3 * max(m.period_s for m in meters))
            _event(meters, on_event, "idle_start")
            t0 = time.monotonic()
            time.sleep(spec.idle_s)
            idle = Window(t0, time.monotonic())
            _event(meters, on_event, "idle_end")
        samples, windows = [], []
        _event(meters, on_event, "timed_start")
        for _ in range(spec.repeats):
            # the estimate from warm-up can be off: add chunks until count and duration are both met
            t0, rep, inferences = time.monotonic(), [], 0
            while not rep or (time.monotonic() - t0 < duration and len(rep) < spec.max_runs_per_repeat):
                rep += ex.time_runs(n)
                inferences += n + ex.extra_runs_per_call
            samples.append(rep)
            windows.append(Window(t0, time.monotonic(), inferences))
        _event(meters, on_event, "timed_end")
    finally:
        traces = [m.stop() for m in meters]
    m = Measurement("ok", True, check.max_abs_err, check.tolerance, "", samples, ex.timer, windows, idle,
                    traces=traces)
    for tr in traces:
        try:
            m.energy.append(energy_per_inference(tr, idle, windows))
        except ValueError as exc:  # keep the latency already measured; say why energy is missing
            m.energy_note = f"energy unavailable: {exc}"
            continue
        m.energy_note = "; ".join(tr.notes) if tr.notes else m.energy_note
    if spec.cooldown_s:
        time.sleep(spec.cooldown_s)
    return m


def throttled(before: DeviceSnapshot, after: DeviceSnapshot, spec: ProtocolSpec) -> bool:
    """A clock that fell by `freq_drop` or more, or a temperature at or above `temp_limit_c`."""
    b, a = before.clocks(), after.clocks()
    for name, f0 in b.items():
        f1 = a.get(name)
        if f0 and f1 is not None and f1 < (1 - spec.freq_drop) * f0:
            return True
    return any(t >= spec.temp_limit_c for t in [*before.temps_c.values(), *after.temps_c.values()])
