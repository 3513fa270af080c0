"""Campaign files: TOML validated by pydantic, expanded into cells (model x compression x target).

Errors name the file, the key and what was expected, on one line.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import targets as target_registry
from bench import power
from bench.api import MeterError, ProtocolSpec, TargetError, did_you_mean
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
    variant: str | None = None  # a variant directory made by `joulebench compress` (already compressed)
    checkpoint: str | None = None
    seed: int = 0
    batch: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _in_zoo(cls, v: str | None) -> str | None:
        if v is not None and v not in zoo.ZOO:
            raise ValueError(f"unknown model '{v}'{did_you_mean(v, zoo.ZOO)} (expected one of: {', '.join(zoo.ZOO)})")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if sum(x is not None for x in (self.name, self.path, self.variant)) != 1:
            raise ValueError("give exactly one of 'name' (a zoo model), 'path' (.onnx / .pt2 file) or 'variant' "
                             "(a directory made by `joulebench compress`)")
        return self

    def spec(self) -> ModelSpec:
        return ModelSpec(self.name, self.path, self.checkpoint, self.seed, self.batch)

    @cached_property
    def stored_manifest(self) -> dict:
        """The stored manifest of a `variant` entry ({} for other entries); read once (labels and cell ids use it)."""
        if self.variant is None:
            return {}
        return json.loads((Path(self.variant) / "manifest.json").read_text())

    @property
    def label(self) -> str:
        return self.stored_manifest.get("model", "variant") if self.variant else self.spec().label

    def stored_compression(self) -> CompressionSpec:
        """What a `variant` entry was compressed with (its only compression: it is not compressed again)."""
        mf = self.stored_manifest
        return CompressionSpec(**(mf.get("compression") or {}), **({} if mf.get("compression") else
                                                                  {"name": mf.get("variant", "dense")}))


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
            raise ValueError(f"unknown target '{v}'{did_you_mean(v, target_registry.registered())} "
                             f"(installed: {', '.join(sorted(target_registry.registered()))})")
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
    baseline_target: str | None = None  # reports give every row's ratios against this target too


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
    _labels: dict[str, str] | None = None

    _models_list = field_validator("models", "targets", "compression", mode="before")(lambda v: _listify(v))

    @property
    def name(self) -> str:
        return self.campaign.name

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def cells(self) -> list[Cell]:
        out = []
        for m in self.models:
            for c in [m.stored_compression()] if m.variant else self.compression:
                out += [Cell(m, c, t, self.protocol, self.variant_label(c)) for t in self.targets]
        return out

    def variant_label(self, spec: CompressionSpec) -> str:
        """A compression's label, unique in this campaign: entries whose automatic labels collide get
        the fields that tell them apart appended (e.g. `block8x16-s0.875-w8a8-method=admm`)."""
        if self._labels is None:
            self._labels = unique_labels(self.compression)
        return self._labels.get(_spec_key(spec), spec.label)


def _spec_key(spec: CompressionSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


def unique_labels(specs: list[CompressionSpec]) -> dict[str, str]:
    """spec key -> label; colliding automatic labels are disambiguated by the fields that differ."""
    groups: dict[str, list[CompressionSpec]] = {}
    for s in specs:
        groups.setdefault(s.label, []).append(s)
    out = {}
    defaults = CompressionSpec().model_dump(mode="json")
    for label, group in groups.items():
        dumps = [s.model_dump(mode="json", exclude={"name"}) for s in group]
        differing = [k for k in dumps[0] if len({json.dumps(d[k], sort_keys=True) for d in dumps}) > 1]
        for s, d in zip(group, dumps, strict=True):
            # a field at its default is left out: the plain label is the default entry's
            extra = "-".join(f"{k}={d[k]}" for k in differing if d[k] != defaults[k])
            out[_spec_key(s)] = f"{label}-{extra}" if extra and s.name is None else label
    return out


@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    compression: CompressionSpec
    target: TargetEntry
    protocol: ProtocolSpec
    variant_label: str = ""

    @property
    def id(self) -> str:
        """Content hash of everything that decides this cell's result, model files included."""
        m = self.model.model_dump()
        for key in ("path", "checkpoint"):
            if m.get(key):
                m[key + "_digest"] = file_digest(m[key]) if Path(m[key]).is_file() else "missing"
        if self.model.variant:
            m["variant_digest"] = self.model.stored_manifest.get("hash")
        blob = {"model": m, "compression": self.compression.model_dump(mode="json"),
                "target": self.target.model_dump(), "protocol": self.protocol.model_dump()}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.model.label} / {self.variant_label or self.compression.label} / {self.target.label}"


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
            for k in ("path", "checkpoint", "variant"):
                if isinstance(m.get(k), str):
                    m[k] = str((base / m[k]).resolve()) if not Path(m[k]).is_absolute() else m[k]
        if key in data:
            data[key] = _listify(data[key])
    try:
        camp = Campaign.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: a misspelt section (`[[model]]`) also leaves a required one missing
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(err["loc"][-1], _known_keys(err["loc"]))
        raise CampaignError(f"{path}: {loc or 'campaign'}: {msg}") from None
    for i, m in enumerate(camp.models):
        for key in ("path", "checkpoint"):
            f = getattr(m, key)
            if f is not None and not Path(f).is_file():
                raise CampaignError(f"{path}: models[{i}].{key}: file not found: {f}")
        if m.variant is not None and not (Path(m.variant) / "manifest.json").is_file():
            raise CampaignError(f"{path}: models[{i}].variant: not a variant directory (no manifest.json): {m.variant}")
    _check_compression(path, camp)
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
        devices = t.devices or ([t.device] if t.device else [])
        try:
            backend.preflight(backend.parse_options(t.options), devices, camp.compression)
        except TargetError as exc:
            raise CampaignError(f"{path}: targets[{i}]: {exc}") from None
    names = [t.name for t in camp.targets]
    base = camp.campaign.baseline_target
    if base is not None and base not in names:
        raise CampaignError(f"{path}: campaign.baseline_target: '{base}' is not one of this campaign's "
                            f"targets{did_you_mean(base, names)} ({', '.join(names)})")
    camp._source = path
    return camp


def _known_keys(loc: tuple) -> list[str]:
    """The keys accepted where an unknown key `loc` was found (for 'did you mean')."""
    section = {"models": ModelEntry, "compression": CompressionSpec, "protocol": ProtocolSpec,
               "campaign": CampaignMeta}.get(str(loc[0])) if len(loc) > 1 else Campaign
    return list(section.model_fields) if section else []


# Keys that change nothing unless another key says so: setting one anyway is a mistake worth a line.
_NEEDS = [
    (("sparsity", "block", "block_mode", "balanced", "per_layer", "method", "rounds", "exempt_first_last"),
     lambda c: c.scheme != "none", "scheme = 'none' prunes nothing (set scheme = 'block', 'unstructured', ...)"),
    (("block", "block_mode", "balanced"), lambda c: c.scheme == "block", "only scheme = 'block' has blocks"),
    (("admm_epochs",), lambda c: c.method == "admm", "only method = 'admm' runs ADMM epochs"),
    (("rounds",), lambda c: c.method == "iterative", "only method = 'iterative' prunes in rounds"),
    (("act_bits", "calibration", "qat_epochs"), lambda c: c.quantized, "bits = 32 quantizes nothing"),
]


def _check_compression(path: Path, camp: Campaign) -> None:
    """Ignored keys, names that match no layer, missing datasets, repeated entries: one line each."""
    seen: dict[str, int] = {}
    for i, c in enumerate(camp.compression):
        for keys, applies, why in _NEEDS:
            given = [k for k in keys if k in c.model_fields_set]
            if given and not applies(c):
                raise CampaignError(f"{path}: compression[{i}].{given[0]}: ignored: {why}")
        if c.data not in (None, "digits") and not Path(c.data).expanduser().exists():
            raise CampaignError(f"{path}: compression[{i}].data: dataset path not found: {c.data} "
                                "(give 'digits', a CIFAR-10 batch folder or an image folder)")
        key = _spec_key(c.model_copy(update={"name": None}))
        if key in seen:
            raise CampaignError(f"{path}: compression[{i}]: same compression as compression[{seen[key]}]")
        seen[key] = i
    names = [camp.variant_label(c) for c in camp.compression]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise CampaignError(f"{path}: compression[{i}].name: '{n}' is also compression[{names.index(n)}]'s label: "
                                "labels name the variants in reports and plots, so they must differ")
    per_layer = {k for c in camp.compression for k in c.per_layer}
    if per_layer:
        for i, m in enumerate(camp.models):
            if m.name is not None:
                _check_layer_names(path, i, m.name, camp.compression)


def _check_layer_names(path: Path, i: int, model: str, specs: list[CompressionSpec]) -> None:
    from pruning.schemes.layers import weighted_layers

    layers = [n for n, _ in weighted_layers(zoo.build(model))]
    for j, c in enumerate(specs):
        for name in c.per_layer:
            if name not in layers:
                raise CampaignError(f"{path}: compression[{j}].per_layer: '{name}' is no layer of {model} "
                                    f"(models[{i}]){did_you_mean(name, layers)}")
