"""Campaign files: TOML validated by pydantic, expanded into cells (model x compression x target).

Errors name the file, the key and what was expected, on one line.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import targets as target_registry
from bench import power
from bench.api import MeterError, ProtocolSpec, TargetError
from pruning import zoo
from pruning.spec import CompressionSpec
from pruning.variant import ModelSpec, file_digest


class CampaignError(ValueError):
    """An invalid campaign file; the message is `file: key: problem`."""


def _strict() -> ConfigDict:
    return ConfigDict(extra="forbid")


class ModelEntry(BaseModel):
    model_config = _strict()

    name: str | None = None
    path: str | None = None
    checkpoint: str | None = None
    seed: int = 0
    batch: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _in_zoo(cls, v: str | None) -> str | None:
        if v is not None and v not in zoo.ZOO:
            raise ValueError(f"unknown model '{v}' (expected one of: {', '.join(zoo.ZOO)})")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a zoo model) or 'path' (.onnx / .pt2 file)")
        return self

    def spec(self) -> ModelSpec:
        return ModelSpec(self.name, self.path, self.checkpoint, self.seed, self.batch)


class TargetEntry(BaseModel):
    """`name` picks the backend, `device` the device it opens; every other key is a backend option."""

    model_config = ConfigDict(extra="allow")

    name: str
    device: str | None = None
    meters: list[str | dict] | None = None  # None: the target's defaults, each used if it works here
    devices: list[str] | None = None  # several devices: this entry's cells run in parallel, one per device

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if not target_registry.known(v):
            raise ValueError(f"unknown target '{v}' (installed: {', '.join(sorted(target_registry.registered()))})")
        return v

    @property
    def options(self) -> dict:
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        if self.devices:
            return f"{self.name}@{len(self.devices)} devices"
        return self.name if self.device in (None, "host") else f"{self.name}@{self.device}"


class CampaignMeta(BaseModel):
    model_config = _strict()

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""


def _listify(v):
    if isinstance(v, (str, dict)):
        v = [v]
    return [{"name": x} if isinstance(x, str) else x for x in v]


class Campaign(BaseModel):
    model_config = _strict()

    campaign: CampaignMeta
    models: list[ModelEntry] = Field(min_length=1)
    compression: list[CompressionSpec] = Field(default_factory=lambda: [CompressionSpec()])
    targets: list[TargetEntry] = Field(min_length=1)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)

    _source: Path | None = None

    _models_list = field_validator("models", "targets", "compression", mode="before")(lambda v: _listify(v))

    @property
    def name(self) -> str:
        return self.campaign.name

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def cells(self) -> list[Cell]:
        return [Cell(m, c, t, self.protocol) for m in self.models for c in self.compression for t in self.targets]


@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    compression: CompressionSpec
    target: TargetEntry
    protocol: ProtocolSpec

    @property
    def id(self) -> str:
        """Content hash of everything that decides this cell's result, model files included."""
        m = self.model.model_dump()
        for key in ("path", "checkpoint"):
            if m.get(key):
                m[key + "_digest"] = file_digest(m[key]) if Path(m[key]).is_file() else "missing"
        blob = {"model": m, "compression": self.compression.model_dump(mode="json"),
                "target": self.target.model_dump(), "protocol": self.protocol.model_dump()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.model.spec().label} / {self.compression.label} / {self.target.label}"


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load(path: str | Path) -> Campaign:
    path = Path(path)
    if not path.is_file():
        raise CampaignError(f"{path}: campaign file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: malformed TOML: {exc}") from None
    base = path.parent
    for key in ("models",):
        for m in _listify(data.get(key, [])):
            for k in ("path", "checkpoint"):
                if isinstance(m.get(k), str):
                    m[k] = str((base / m[k]).resolve()) if not Path(m[k]).is_absolute() else m[k]
        if key in data:
            data[key] = _listify(data[key])
    try:
        camp = Campaign.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise CampaignError(f"{path}: {loc or 'campaign'}: {msg}") from None
    for i, m in enumerate(camp.models):
        for key in ("path", "checkpoint"):
            f = getattr(m, key)
            if f is not None and not Path(f).is_file():
                raise CampaignError(f"{path}: models[{i}].{key}: file not found: {f}")
    for i, t in enumerate(camp.targets):
        try:
            backend = target_registry.get(t.name)
            backend.parse_options(t.options)
        except TargetError as exc:
            raise CampaignError(f"{path}: targets[{i}]: {exc}") from None
        if t.meters and backend.figures != "measured":
            raise CampaignError(f"{path}: targets[{i}].meters: {t.name} reports {backend.figures} figures; "
                                "meters measure real hardware (remove the key)")
        for j, spec in enumerate(t.meters or []):
            try:
                power.check_spec(spec)
            except MeterError as exc:
                raise CampaignError(f"{path}: targets[{i}].meters[{j}]: {exc}") from None
    camp._source = path
    return camp
