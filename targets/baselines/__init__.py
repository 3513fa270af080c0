"""Framework baselines a user would deploy instead of a TVM build: PyTorch eager, ONNX Runtime, OpenVINO."""

from __future__ import annotations

import importlib
from typing import ClassVar

from bench.api import Target


class RuntimeBaseline(Target):
    """A baseline that is a Python package run on this CPU: usable if the package imports, its version (part
    of every artifact's cache key) is the package's, and the host's energy counter is its default meter."""

    package: ClassVar[str]  # the module to import, e.g. "onnxruntime"
    version_tag: ClassVar[str]  # the cache key's prefix, e.g. "ort"
    revision: ClassVar[int]  # bump when compiled output would change for the same package version

    def default_meters(self) -> list[str | dict]:
        return ["rapl"]  # the host package's energy counter, where the machine exposes it

    def availability(self) -> tuple[bool, str]:
        try:
            importlib.import_module(self.package)
        except ImportError:
            return False, f"{self.package} is not installed; run `make venv`"
        return True, ""

    def version(self) -> str:
        return f"{self.version_tag}-{importlib.import_module(self.package).__version__}-{self.revision}"
