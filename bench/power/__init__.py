"""Power meters (plugins, `joulebench.meters` entry points), traces and energy per inference."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from bench.power.meter import Meter, MeterError


def registered() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="joulebench.meters")}


def meter_class(name: str) -> type[Meter]:
    ref = name if ":" in name else registered().get(name)
    if ref is None:
        raise MeterError(f"unknown meter '{name}' (installed: {', '.join(sorted(registered()))})")
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def make(spec: str | dict, **context) -> Meter:
    """A meter from a campaign spec: 'rapl' or {name = 'hwmon', root = '/mnt/board', device = 'ina260'}.
    `context` (a device session's shell, sysfs root) fills the options the meter takes and the spec
    leaves unset."""
    import inspect

    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    cls = meter_class(spec.pop("name"))
    accepted = inspect.signature(cls).parameters
    for k, v in context.items():
        if k in accepted:
            spec.setdefault(k, v)
    try:
        return cls(**spec)
    except TypeError as exc:
        raise MeterError(f"meter {cls.name}: {exc}") from None
