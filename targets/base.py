"""The Target protocol every backend implements, and the Artifact it compiles to.

A backend subclasses `Target` (compile a Variant into an Artifact directory) and `Session`
(load an Artifact on a device into an `Executor`); the shared measurement protocol does the rest.
Register it under the `joulebench.targets` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bench.protocol import Executor, Measurement, ProtocolSpec, run_protocol
from pruning.variant import Variant


class TargetError(RuntimeError):
    """A backend problem with a one-line message: missing tool, device, or a failed build."""


class NotRunnable(TargetError):
    """The artifact was built but cannot run here (no device, no NDK): the cell is 'compiled', not failed."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Artifact:
    target: str
    path: Path  # directory holding the compiled files and manifest.json
    manifest: dict
    variant: Variant

    def file(self, name: str) -> Path:
        return self.path / name


class Session(ABC):
    """A connection to one device of a target; `load` turns an Artifact into an Executor."""

    device: str = "host"

    def snapshot(self) -> dict:
        return {}

    @abstractmethod
    def load(self, artifact: Artifact) -> Executor: ...

    def run(self, artifact: Artifact, protocol: ProtocolSpec, meters: Sequence = ()) -> Measurement:
        v = artifact.variant
        before = self.snapshot()
        m = run_protocol(self.load(artifact), v.example_input(), v.reference_output, v.precision, protocol, meters)
        m.device = {"before": before, "after": self.snapshot()}
        return m

    def close(self) -> None:  # noqa: B027 - most sessions hold nothing
        pass


class Target(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def availability(self) -> tuple[bool, str]:
        """(usable here, why not)."""
        return True, ""

    def accepts(self, variant: Variant) -> str | None:
        """None if this target can run `variant`, else the reason it cannot."""
        return None

    def parse_options(self, options: dict) -> BaseModel:
        try:
            return self.Options(**options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            raise TargetError(f"{self.name}: option '{key}': {err['msg']}") from None

    def version(self) -> str:
        """Part of the artifact cache key: bump when compiled output would change."""
        return "1"

    def default_meters(self) -> list[str | dict]:
        """Meters attached when a campaign names none; each is used only if it works here."""
        return []

    @abstractmethod
    def compile(self, variant: Variant, options: BaseModel, workdir: Path) -> dict:
        """Write the artifact's files into `workdir`; return its manifest (kernels, versions, options)."""

    @abstractmethod
    def open(self, device: str | None, options: BaseModel) -> Session: ...
