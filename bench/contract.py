"""The backend contract, as a check any backend author runs against their class (`bench.api.check_target`).

Declarations first (names, options, availability, figures kind, default meters), then, with `run`, the
real path on a seeded small CNN: compile into a fresh directory (a JSON-serializable manifest), open a
session, load, verify against the PyTorch reference and measure once under a minimal protocol, and
check that every figure carries a provenance of the kind the target declares.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import BaseModel

from bench.api import KINDS, Artifact, Executor, NotRunnable, ProtocolSpec, Session, Target, TargetError, kind_of

QUICK = ProtocolSpec(warmup_runs=1, warmup_s=0, min_runs=3, min_duration_s=0, repeats=1)


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def check_target(cls: type[Target], run: bool = True) -> list[str]:
    """Check `cls` against the backend contract; raises AssertionError naming the first breach. Returns
    notes on what could not be exercised here (not available, compile only)."""
    name = getattr(cls, "__name__", repr(cls))
    _require(isinstance(cls, type) and issubclass(cls, Target), f"{name} is not a bench.api.Target subclass")
    t = cls()
    _require(isinstance(t.name, str) and t.name != "", f"{name}.name must be a non-empty string")
    _require(isinstance(t.description, str) and t.description != "", f"{t.name}: description must be a string")
    _require(t.figures in KINDS, f"{t.name}: figures must be one of {KINDS}, not {t.figures!r}")
    _require(isinstance(t.Options, type) and issubclass(t.Options, BaseModel), f"{t.name}: Options must be a model")
    ok, why = t.availability()
    _require(isinstance(ok, bool) and isinstance(why, str), f"{t.name}: availability() must return (bool, str)")
    _require(isinstance(t.version(), str), f"{t.name}: version() must return a string")
    meters = t.default_meters()
    _require(isinstance(meters, list), f"{t.name}: default_meters() must return a list")
    _require(t.figures == "measured" or not meters, f"{t.name}: a {t.figures} target attaches no meters")
    try:
        options = t.parse_options({})
    except TargetError:
        return [f"{t.name}: needs options to be exercised (none given)"]
    try:
        t.parse_options({"no_such_option_xyz": 1})
        raise AssertionError(f"{t.name}: an unknown option must be rejected with TargetError")
    except TargetError:
        pass
    if not run:
        return []
    if not ok:
        return [f"{t.name}: not available here ({why}); run path not exercised"]
    return _run(t, options)


def _run(t: Target, options: BaseModel) -> list[str]:
    from bench.protocol import measure
    from pruning.compress import make_variant
    from pruning.spec import CompressionSpec
    from pruning.variant import ModelSpec

    v = make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec())
    reason = t.accepts(v)
    if reason is not None:
        _require(isinstance(reason, str), f"{t.name}: accepts() must return None or a reason string")
        return [f"{t.name}: does not accept the small CNN ({reason})"]
    with tempfile.TemporaryDirectory() as d:
        manifest = t.compile(v, options, Path(d))
        _require(isinstance(manifest, dict), f"{t.name}: compile() must return a dict manifest")
        json.dumps(manifest, default=str)  # must serialize (default=str: paths and numbers are fine)
        artifact = Artifact(t.name, Path(d), manifest, v)
        try:
            session = t.open(None, options)
        except NotRunnable as exc:
            return [f"{t.name}: compile only here ({exc})"]
        _require(isinstance(session, Session), f"{t.name}: open() must return a bench.api.Session")
        try:
            ex = session.load(artifact)
            _require(isinstance(ex, Executor), f"{t.name}: load() must return a bench.api.Executor")
            m = measure(session, artifact, QUICK)
        finally:
            session.close()
    _require(m.status == "ok" and m.verified, f"{t.name}: the small CNN did not verify: {m.message}")
    figures = [m.latency_provenance] + ([m.energy_provenance] if m.energy_provenance else [])
    for p in figures:
        _require(kind_of(p) == t.figures, f"{t.name}: declares {t.figures} figures but reported '{p}'")
    if t.figures == "measured":
        _require(bool(m.samples_s) and all(s > 0 for rep in m.samples_s for s in rep),
                 f"{t.name}: a measured target must return positive latency samples")
    else:
        _require(m.estimate is not None and m.estimate.latency_s.value > 0,
                 f"{t.name}: a {t.figures} target must return an estimate with a positive latency")
    return []
