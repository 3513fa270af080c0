"""Device catalog: typed loader for `catalog.toml` (boards) and `published.toml` (measured points).

Every number in those files is a `Sourced` table `{value, source, note?}` whose `source` names a document in
`[sources]`; the schema makes a bare number a load error, so a figure without a source cannot get in.
Errors are one line: `file: key: what was expected`. Devices have a `kind` ("fpga-board" or "mobile-gpu") so one
file holds every device a campaign can compare.
"""

from __future__ import annotations

import difflib
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "catalog.toml"
PUBLISHED = HERE / "published.toml"
SCHEMA_VERSION = 1


class CatalogError(ValueError):
    """An invalid catalog file or an unknown device; the message is `file: key: problem`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """A document a figure comes from (title names the table or section)."""

    title: str
    publisher: str | None = None


class Sourced(_Strict):
    """A number with the document it comes from and, when derived, how."""

    value: float
    source: str
    note: str | None = None


class FpgaPart(_Strict):
    name: str
    family: Literal["xc7", "xcup"]  # Yosys synth_xilinx -family
    lut: Sourced
    ff: Sourced
    dsp: Sourced
    bram36: Sourced
    uram: Sourced


class Memory(_Strict):
    type: str
    bus_bits: Sourced | None = None
    rate_mtps: Sourced | None = None
    peak_gbps: Sourced

    @property
    def peak_bytes_per_s(self) -> float:
        return self.peak_gbps.value * 1e9


class ProgrammableLogic(_Strict):
    default_clock_mhz: Sourced


class Cpu(_Strict):
    core: str
    cores: Sourced
    clock_ghz: Sourced
    fp32_flops_per_cycle: Sourced | None = None  # per core; None where no peak can be justified

    @property
    def peak_fp32_flops_per_core(self) -> float | None:
        if self.fp32_flops_per_cycle is None:
            return None
        return self.clock_ghz.value * 1e9 * self.fp32_flops_per_cycle.value


class BoardPower(_Strict):
    base_w: Sourced | None = None  # board powered and booted, no accelerator design active
    idle_w: Sourced | None = None  # board idle with a design loaded


class FpgaBoard(_Strict):
    kind: Literal["fpga-board"]
    key: str = ""  # the table name in the catalog, filled in by the loader
    name: str
    vendor: str
    board_source: str
    part: FpgaPart
    memory: Memory
    pl: ProgrammableLogic
    cpu: Cpu
    power: BoardPower = BoardPower()


class GpuCompute(_Strict):
    """Peak arithmetic of a mobile GPU at `clock_mhz`: FMA lanes x 2 FLOP x clock where the vendor gives lane counts
    (each value's note says how it was derived)."""

    clock_mhz: Sourced
    cores: Sourced | None = None  # shader cores (Mali) / shader processors (Adreno), as the vendor counts them
    fp32_gflops: Sourced
    fp16_gflops: Sourced | None = None  # None where no fp16 rate is published: fp16 then runs at the fp32 rate

    @property
    def peak_fp32_flops(self) -> float:
        return self.fp32_gflops.value * 1e9

    @property
    def peak_fp16_flops(self) -> float:
        return (self.fp16_gflops or self.fp32_gflops).value * 1e9


class SocMemory(_Strict):
    """The SoC's DRAM; `peak_gbps` None where no source gives it (the models then have no memory roof)."""

    type: str
    bus_bits: Sourced | None = None
    rate_mtps: Sourced | None = None
    peak_gbps: Sourced | None = None

    @property
    def peak_bytes_per_s(self) -> float | None:
        return None if self.peak_gbps is None else self.peak_gbps.value * 1e9


class GpuPower(_Strict):
    idle_w: Sourced | None = None  # device idle (screen state as the source measured it)
    load_w: Sourced | None = None  # GPU at full load, above idle


class MobileGpu(_Strict):
    kind: Literal["mobile-gpu"]
    key: str = ""  # the table name in the catalog, filled in by the loader
    name: str
    vendor: str
    soc: str
    family: Literal["adreno", "mali"]  # architecture family: the latency model fits one compute efficiency per family
    board_source: str  # the document describing the SoC
    compute: GpuCompute
    memory: SocMemory
    power: GpuPower = GpuPower()

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for a kernel whose arithmetic is in `dtype` (float16 at the fp16 rate, anything else fp32)."""
        return self.compute.peak_fp16_flops if dtype == "float16" else self.compute.peak_fp32_flops


# One entry per device kind: the loader validates each [devices.<key>] table against its kind's model.
KINDS: dict[str, type[BaseModel]] = {"fpga-board": FpgaBoard, "mobile-gpu": MobileGpu}
Device = FpgaBoard | MobileGpu


class Catalog(_Strict):
    schema_version: int
    sources: dict[str, Source]
    devices: dict[str, Device]
    path: str = ""

    def get(self, name: str) -> Device:
        """A device by catalog key or display name (case-insensitive)."""
        key = self._resolve(name)
        if key is None:
            raise CatalogError(f"{self.path}: devices: no device '{name}'{_suggest(name, self._names(), sorted(self.devices))}")
        return self.devices[key]

    def board(self, name: str) -> FpgaBoard:
        dev = self.get(name)
        if not isinstance(dev, FpgaBoard):
            raise CatalogError(f"{self.path}: devices.{dev.key}: is a '{dev.kind}', expected an 'fpga-board'")
        return dev

    def boards(self) -> list[FpgaBoard]:
        return [d for d in self.devices.values() if isinstance(d, FpgaBoard)]

    def gpu(self, name: str) -> MobileGpu:
        dev = self.get(name)
        if not isinstance(dev, MobileGpu):
            raise CatalogError(f"{self.path}: devices.{dev.key}: is a '{dev.kind}', expected a 'mobile-gpu'")
        return dev

    def gpus(self) -> list[MobileGpu]:
        return [d for d in self.devices.values() if isinstance(d, MobileGpu)]

    def _names(self) -> list[str]:
        return sorted({*self.devices, *(d.name for d in self.devices.values())})

    def _resolve(self, name: str) -> str | None:
        low = name.lower()
        for key, dev in self.devices.items():
            if low in (key.lower(), dev.name.lower()):
                return key
        return None


class DpuDesign(_Strict):
    """A published accelerator design used as a power-model validation input."""

    board: str
    description: str
    assumed: str | None = None  # what of this design is inferred rather than published
    cores: Sourced
    clock_mhz: Sourced
    lut: Sourced
    ff: Sourced
    dsp: Sourced
    bram36: Sourced
    uram: Sourced | None = None
    avg_bw_mbps: dict[str, Sourced] = Field(default_factory=dict)


class PublishedPoint(_Strict):
    design: str
    network: str
    bw: str
    scored: bool = True
    gop: Sourced
    fps: Sourced
    lat_comp_ms: Sourced
    full_w: Sourced
    idle_w: Sourced | None = None
    base_w: Sourced | None = None


class ConvLayerEntry(_Strict):
    """One conv layer's shape (R x C outputs, M out / N in channels, K x K kernel), as the source tabulates it."""

    r: int
    c: int
    m: int
    n: int
    k: int
    groups: int = 1
    source: str


class LatencyPoint(_Strict):
    """A published accelerator design point with its measured throughput, for the latency model."""

    description: str
    tm: Sourced
    tn: Sourced
    clock_mhz: Sourced
    gflops: Sourced
    layers: list[ConvLayerEntry]


class GpuLatencyPoint(_Strict):
    """A published batch-1 latency of a network on a mobile GPU, for the mobile-gpu latency model. `profile`,
    `lowering` and `precision` say how joulebench builds the network to predict it (the closest build to the
    source's); `assumed` says what of the point is inferred rather than published."""

    gpu: str
    network: str  # a zoo model name
    precision: Literal["fp32", "fp16"]
    profile: Literal["adreno", "adreno-texture", "mali"]
    lowering: Literal["joulebench", "tvm"] = "tvm"
    latency_ms: Sourced
    assumed: str | None = None


class GpuEnergyRange(_Strict):
    """A published range of energy per inference over variants of a network on a mobile GPU, with the variants'
    average FLOPs (to compare per FLOP with the zoo's dense network)."""

    gpu: str  # the catalog GPU the model is evaluated on for this check
    network: str
    precision: Literal["fp32", "fp16"] = "fp32"
    min_mj: Sourced
    max_mj: Sourced
    avg_mflops: Sourced
    assumed: str | None = None


class Published(_Strict):
    schema_version: int
    sources: dict[str, Source]
    designs: dict[str, DpuDesign]
    points: dict[str, PublishedPoint]
    latency_points: dict[str, LatencyPoint] = Field(default_factory=dict)
    gpu_points: dict[str, GpuLatencyPoint] = Field(default_factory=dict)
    gpu_energy_ranges: dict[str, GpuEnergyRange] = Field(default_factory=dict)
    path: str = ""


def _suggest(name: str, names: list[str], known: list[str] | None = None) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5) or difflib.get_close_matches(
        name.lower(), [n.lower() for n in names], n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; known: {', '.join(known or names)}"


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: malformed TOML: {exc}") from None


def _validate(model: object, data: dict, path: Path, prefix: str = ""):
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing field"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type") and isinstance(err["input"], int | float):
            msg = "expected a table {value = <number>, source = \"<source key>\"}, got a bare number"
        elif err["type"] == "literal_error":
            msg = f"expected {err['ctx']['expected']}, got {err['input']!r}"
        where = ".".join(x for x in (prefix, loc) if x)
        raise CatalogError(f"{path}: {where or 'file'}: {msg}") from None


def _check_sources(obj: object, sources: dict[str, Source], path: Path, where: str) -> None:
    """Every Sourced anywhere in obj must cite a known source."""
    if isinstance(obj, Sourced | ConvLayerEntry):
        if obj.source not in sources:
            raise CatalogError(f"{path}: {where}.source: unknown source '{obj.source}'"
                               f"{_suggest(obj.source, sorted(sources))}")
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            _check_sources(getattr(obj, name), sources, path, f"{where}.{name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_sources(v, sources, path, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_sources(v, sources, path, f"{where}[{i}]")


def _check_version(data: dict, path: Path) -> None:
    v = data.get("schema_version")
    if v != SCHEMA_VERSION:
        raise CatalogError(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {v!r}")


def load(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file (the packaged one by default)."""
    if path is None:
        return _default()
    path = Path(path)
    data = _read(path)
    _check_version(data, path)
    sources = _validate(dict[str, Source], data.get("sources", {}), path, "sources") if "sources" in data else {}
    raw = data.get("devices")
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"{path}: devices: missing; expected [devices.<name>] tables")
    devices: dict[str, Device] = {}
    for key, entry in raw.items():
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in KINDS:
            raise CatalogError(f"{path}: devices.{key}.kind: expected one of {sorted(KINDS)}, got {kind!r}")
        dev = _validate(KINDS[kind], {**entry, "key": key}, path, f"devices.{key}")
        if dev.board_source not in sources:
            raise CatalogError(f"{path}: devices.{key}.board_source: unknown source '{dev.board_source}'"
                               f"{_suggest(dev.board_source, sorted(sources))}")
        _check_sources(dev, sources, path, f"devices.{key}")
        devices[key] = dev
    return Catalog(schema_version=data["schema_version"], sources=sources, devices=devices, path=str(path))


def load_published(path: str | Path | None = None, catalog: Catalog | None = None) -> Published:
    """Load the published measurement points; their sources may also be the catalog's."""
    if path is None and catalog is None:
        return _default_published()
    path = Path(path) if path is not None else PUBLISHED
    catalog = catalog or load()
    data = _read(path)
    _check_version(data, path)
    pub = _validate(Published, {**data, "path": str(path)}, path)
    sources = {**catalog.sources, **pub.sources}
    for key, design in pub.designs.items():
        _check_sources(design, sources, path, f"designs.{key}")
        if catalog._resolve(design.board) is None:
            raise CatalogError(f"{path}: designs.{key}.board: no device '{design.board}'"
                               f"{_suggest(design.board, catalog._names(), sorted(catalog.devices))}")
    for key, point in pub.points.items():
        _check_sources(point, sources, path, f"points.{key}")
        if point.design not in pub.designs:
            raise CatalogError(f"{path}: points.{key}.design: no design '{point.design}'"
                               f"{_suggest(point.design, sorted(pub.designs))}")
        if point.bw not in pub.designs[point.design].avg_bw_mbps:
            raise CatalogError(f"{path}: points.{key}.bw: design '{point.design}' has no avg_bw_mbps.{point.bw}")
        if point.scored and point.idle_w is None:
            raise CatalogError(f"{path}: points.{key}.idle_w: a scored point needs the measured idle power")
    for key, lp in pub.latency_points.items():
        _check_sources(lp, sources, path, f"latency_points.{key}")
    for table in ("gpu_points", "gpu_energy_ranges"):
        for key, gp in getattr(pub, table).items():
            _check_sources(gp, sources, path, f"{table}.{key}")
            dev_key = catalog._resolve(gp.gpu)
            if dev_key is None or not isinstance(catalog.devices[dev_key], MobileGpu):
                gpus = sorted(k for k, d in catalog.devices.items() if isinstance(d, MobileGpu))
                raise CatalogError(f"{path}: {table}.{key}.gpu: no mobile GPU '{gp.gpu}'{_suggest(gp.gpu, gpus)}")
    return pub


@lru_cache(maxsize=1)
def _default() -> Catalog:
    return load(CATALOG)


@lru_cache(maxsize=1)
def _default_published() -> Published:
    return load_published(PUBLISHED, _default())


def get(name: str) -> Device:
    """A device of the packaged catalog by key or name, e.g. get("zcu104")."""
    return load().get(name)


def board(name: str) -> FpgaBoard:
    """An FPGA board of the packaged catalog, e.g. board("PYNQ-Z2")."""
    return load().board(name)


def gpu(name: str) -> MobileGpu:
    """A mobile GPU of the packaged catalog, e.g. gpu("adreno-650")."""
    return load().gpu(name)
