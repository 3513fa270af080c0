"""Power meters (plugins, `joulebench.meters` entry points), traces and energy per inference."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

from bench.api import Meter, MeterContext, MeterError, did_you_mean


def registered() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="joulebench.meters")}


def meter_class(name: str) -> type[Meter]:
    ref = name if ":" in name else registered().get(name)
    if ref is None:
        raise MeterError(f"unknown meter '{name}'{did_you_mean(name, registered())} "
                         f"(installed: {', '.join(sorted(registered()))})")
    module, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise MeterError(f"meter '{name}' cannot be loaded from {ref}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Meter)):
        raise MeterError(f"meter '{name}': {ref} is not a joulebench Meter class")
    return cls


def make(spec: str | dict, context: MeterContext | None = None) -> Meter:
    """A meter from a campaign spec: 'rapl' or {name = 'hwmon', root = '/mnt/board', device = 'ina260'}.
    The session's `context` (its shell, sysfs root, work dir) fills the options the meter accepts and
    the spec leaves unset."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    cls = meter_class(spec.pop("name"))
    accepted = inspect.signature(cls).parameters
    for k, v in (context or MeterContext()).options().items():
        if k in accepted:
            spec.setdefault(k, v)
    try:
        return cls(**spec)
    except TypeError as exc:
        raise MeterError(f"meter {cls.name}: {exc}") from None


def check_spec(spec: str | dict) -> None:
    """Validate a campaign meter spec without touching hardware: known name, accepted option names."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise MeterError("a meter spec needs a name")
    cls = meter_class(str(spec.pop("name")))
    params = inspect.signature(cls).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(spec) - set(params))
    if unknown:
        raise MeterError(f"meter {cls.name}: unknown option '{unknown[0]}'{did_you_mean(unknown[0], params)} "
                         f"(accepted: {', '.join(params) or 'none'})")
