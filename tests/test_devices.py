"""Device catalog: loads, every number has a source, bad files give one-line errors naming file and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from targets.devices import catalog
from targets.devices.catalog import CatalogError, load, load_published

CATALOG_TEXT = catalog.CATALOG.read_text()


def _numbers_without_source(node: object, where: str = "") -> list[str]:
    """Every numeric leaf must sit in a table that also has a `source` (schema_version excepted)."""
    bad = []
    if isinstance(node, dict):
        has_source = "source" in node
        for k, v in node.items():
            path = f"{where}.{k}" if where else k
            if isinstance(v, bool):
                continue
            if isinstance(v, int | float):
                if not has_source and path != "schema_version":
                    bad.append(path)
            else:
                bad += _numbers_without_source(v, path)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            bad += _numbers_without_source(v, f"{where}[{i}]")
    return bad


@pytest.mark.parametrize("path", [catalog.CATALOG, catalog.PUBLISHED])
def test_every_number_has_a_source(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    assert _numbers_without_source(data) == []
    sources = {**tomllib.loads(catalog.CATALOG.read_text())["sources"], **data.get("sources", {})}
    cited = set(re.findall(r'source = "([^"]+)"', path.read_text()))
    assert cited and cited <= set(sources)


def test_catalog_boards_and_figures() -> None:
    cat = load()
    assert sorted(b.key for b in cat.boards()) == ["kv260", "pynq-z2", "ultra96-v2", "zcu102", "zcu104"]
    z7 = cat.board("PYNQ-Z2")
    assert (z7.part.family, z7.part.lut.value, z7.part.dsp.value, z7.part.bram36.value) == ("xc7", 53200, 220, 140)
    assert z7.memory.peak_gbps.value == pytest.approx(16 * 1050 / 8 / 1000)  # as its note derives it
    assert z7.cpu.peak_fp32_flops_per_core == pytest.approx(0.65e9 * 4)
    zcu104 = catalog.board("zcu104")
    assert zcu104.part.family == "xcup" and zcu104.part.uram.value == 96 and zcu104.part.dsp.value == 1728
    assert catalog.get("kv260").part.lut.value == 117120
    for b in cat.boards():  # ordering sanity of real parts: FF = 2 x LUT in both families
        assert b.part.ff.value == 2 * b.part.lut.value
        assert b.kind == "fpga-board" and b.pl.default_clock_mhz.value == 100
    assert cat.board("zcu102").power.base_w.value == 20.0 and cat.board("kv260").power.base_w is None


def test_published_points_load() -> None:
    pub = load_published()
    assert pub.points["zcu102-rn50"].full_w.value == 31.8 and pub.points["zcu102-rn50"].idle_w.value == 29.0
    assert not pub.points["zcu104-rn50"].scored
    assert pub.designs["zcu102-dpu-3xb4096"].dsp.value == 3 * 642
    assert len(pub.latency_points["zhang-fpga15"].layers) == 5


def test_unknown_board_suggests() -> None:
    with pytest.raises(CatalogError) as e:
        catalog.board("zcu14")
    msg = str(e.value)
    assert "\n" not in msg and "catalog.toml" in msg and "'zcu14'" in msg and "did you mean 'zcu104'" in msg


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cat.toml"
    p.write_text(text)
    return p


def _one_line_error(path: Path) -> str:
    with pytest.raises(CatalogError) as e:
        load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_missing_field(tmp_path: Path) -> None:
    bad = CATALOG_TEXT.replace('dsp = { value = 1728, source = "ds891" }\n', "")
    msg = _one_line_error(_write(tmp_path, bad))
    assert "devices.zcu104.part.dsp: missing field" in msg


def test_bare_number(tmp_path: Path) -> None:
    bad = CATALOG_TEXT.replace('dsp = { value = 1728, source = "ds891" }', "dsp = 1728")
    msg = _one_line_error(_write(tmp_path, bad))
    assert "devices.zcu104.part.dsp" in msg and "got a bare number" in msg


def test_unknown_source(tmp_path: Path) -> None:
    bad = CATALOG_TEXT.replace('dsp = { value = 1728, source = "ds891" }', 'dsp = { value = 1728, source = "ds89" }')
    msg = _one_line_error(_write(tmp_path, bad))
    assert "devices.zcu104.part.dsp.source: unknown source 'ds89' (did you mean 'ds891'?)" in msg


def test_unknown_kind_and_family(tmp_path: Path) -> None:
    msg = _one_line_error(_write(tmp_path, CATALOG_TEXT.replace('kind = "fpga-board"', 'kind = "fpga"', 1)))
    assert "devices.pynq-z2.kind: expected one of ['fpga-board', 'mobile-gpu'], got 'fpga'" in msg
    msg = _one_line_error(_write(tmp_path, CATALOG_TEXT.replace('family = "xc7"', 'family = "7series"')))
    assert "devices.pynq-z2.part.family" in msg and "'7series'" in msg


def test_file_level_errors(tmp_path: Path) -> None:
    assert "catalog file not found" in _one_line_error(tmp_path / "nope.toml")
    assert "malformed TOML" in _one_line_error(_write(tmp_path, "devices = [\n"))
    msg = _one_line_error(_write(tmp_path, CATALOG_TEXT.replace("schema_version = 1", "schema_version = 2")))
    assert "schema_version: expected 1, got 2" in msg


def test_published_bad_design_reference(tmp_path: Path) -> None:
    text = catalog.PUBLISHED.read_text().replace('design = "ultra96-dpu-b1152"', 'design = "ultra96-dpu"', 1)
    p = tmp_path / "pub.toml"
    p.write_text(text)
    with pytest.raises(CatalogError) as e:
        load_published(p, load())
    assert "points.ultra96-rn50.design: no design 'ultra96-dpu' (did you mean 'ultra96-dpu-b1152'?)" in str(e.value)
