"""Backend registry: targets come from the `joulebench.targets` entry-point group.

A name with a colon (`package.module:Class`) loads that class directly, which lets a backend under
development run in a campaign before it is packaged.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from bench.api import Target, TargetError, did_you_mean


def registered() -> dict[str, str]:
    """Target name -> 'module:attr' for every installed backend."""
    return {ep.name: ep.value for ep in entry_points(group="joulebench.targets")}


def known(name: str) -> bool:
    return ":" in name or name in registered()


def get(name: str) -> Target:
    ref = name if ":" in name else registered().get(name)
    if ref is None:
        raise TargetError(f"unknown target '{name}'{did_you_mean(name, registered())} "
                          f"(installed: {', '.join(sorted(registered())) or 'none'})")
    module, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"target '{name}' cannot be loaded from {ref}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise TargetError(f"target '{name}': {ref} is not a joulebench Target class")
    return cls()
