"""The public API: import layering, the backend contract for every installed backend, the example plugin
installed through its entry point, simulated/modeled figures kept apart, versioned results, resume rules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import targets as registry
from bench.api import (
    DeviceSnapshot,
    Estimate,
    Executor,
    Figure,
    Meter,
    PowerTrace,
    ProtocolSpec,
    TargetError,
    check_provenance,
)
from bench.contract import check_target
from bench.protocol import run_protocol
from tests.conftest import ROOT, run_cli, write_campaign

EXAMPLE = ROOT / "examples" / "roofline-backend"


def import_graph(root: Path, packages=("bench", "pruning", "targets")) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (function-level imports included)."""
    mods = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            mods[name] = f

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for m, f in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            deps |= {r for n in names if (r := resolve(n)) and r != m}
        graph[m] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_and_targets_see_only_the_api():
    graph = import_graph(ROOT)
    assert cycles(graph) == []
    into_bench = {m: sorted(d for d in deps if d.startswith("bench")) for m, deps in graph.items()
                  if m.startswith("targets")}
    assert {d for deps in into_bench.values() for d in deps} <= {"bench.api"}, into_bench
    # the API module stands alone: it imports no other joulebench module but the Variant record
    assert graph["bench.api"] <= {"pruning.variant"}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_provenance_labels():
    for good in ("measured:rapl", "simulated:verilator", "modeled:fpga-power@1"):
        assert check_provenance(good) == good
    for bad in ("measured", "modeled:fpga-power", "guessed:x", "simulated:"):
        with pytest.raises(ValueError, match="must be measured"):
            check_provenance(bad)
    with pytest.raises(ValueError):
        Figure(1.0, "modeled:roofline")  # a model without a version is refused


class _Modeled(Executor):
    def __init__(self, out: np.ndarray, provenance: str = "simulated:toy") -> None:
        self.out, self.provenance, self.timed = out, provenance, 0

    def infer(self, x):
        return self.out

    def time_runs(self, n):
        self.timed += n
        return [1e-3] * n

    def estimate(self):
        return Estimate(Figure(2e-3, self.provenance, {"clock_hz": 1e8}), details={"cycles": Figure(2e5, "simulated:toy")})


def test_protocol_takes_an_estimate_once_and_never_times_it():
    ref = np.ones((1, 10), np.float32)
    ex = _Modeled(ref)
    m = run_protocol(ex, np.zeros(1), ref, "fp32", ProtocolSpec())
    assert m.status == "ok" and m.verified and ex.timed == 0 and m.samples_s == []
    assert m.latency_provenance == "simulated:toy" and m.estimate.details["cycles"].value == 2e5
    wrong = _Modeled(ref + 1.0)  # a wrong output is caught before any figure
    assert run_protocol(wrong, np.zeros(1), ref, "fp32", ProtocolSpec()).status == "failed"
    with pytest.raises(TargetError, match="an estimate is simulated or modeled"):
        run_protocol(_Modeled(ref, "measured:stopwatch"), np.zeros(1), ref, "fp32", ProtocolSpec())


class _ConstantMeter(Meter):
    name, unit, clock = "constant", "W", "host-monotonic"

    def __init__(self) -> None:
        self.t: list[float] = []
        self.marks: list[str] = []
        self.period_s = 0.01

    def start(self):
        import time

        self.t = [time.monotonic()]

    def mark(self, label):
        self.marks.append(label)

    def stop(self):
        import time

        t1 = time.monotonic()
        t = np.linspace(self.t[0], t1, 50)
        return PowerTrace(self.name, t, watts=np.full(50, 2.0))


def test_session_hears_protocol_events_in_order():
    events = []
    ref = np.ones((1, 3), np.float32)

    class Timed(Executor):
        timer = "toy"

        def infer(self, x):
            return ref

        def time_runs(self, n):
            return [1e-4] * n

    meter = _ConstantMeter()
    spec = ProtocolSpec(warmup_runs=1, warmup_s=0, min_runs=2, min_duration_s=0, repeats=2, idle_s=0.05,
                        min_power_samples=2)
    m = run_protocol(Timed(), np.zeros(1), ref, "fp32", spec, [meter], lambda label, t: events.append((label, t)))
    assert [e for e, _ in events] == ["idle_start", "idle_end", "timed_start", "timed_end"]
    assert [t for _, t in events] == sorted(t for _, t in events)
    assert meter.marks == [e for e, _ in events] and m.energy[0].avg_power_w == pytest.approx(2.0)


def test_throttle_check_uses_typed_snapshots():
    from bench.protocol import throttled

    spec = ProtocolSpec(freq_drop=0.1)
    assert throttled(DeviceSnapshot(gpu_hz={"gpu": 585e6}), DeviceSnapshot(gpu_hz={"gpu": 300e6}), spec)
    assert not throttled(DeviceSnapshot(), DeviceSnapshot(), spec) and DeviceSnapshot().empty


# ---- the example backend, installed through its entry point -------------------------------------------------


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """pip installs the example package (and its entry point) into an isolated directory."""
    d = tmp_path_factory.mktemp("plugin")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(d), str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert list(d.glob("jb_roofline-*.dist-info/entry_points.txt"))
    return d


@pytest.fixture(scope="module")
def plugin_on_path(plugin_dir):
    sys.path.insert(0, str(plugin_dir))
    import importlib

    importlib.invalidate_caches()
    yield plugin_dir
    sys.path.remove(str(plugin_dir))


def installed_targets() -> list[str]:
    return sorted(registry.registered())


@pytest.mark.parametrize("name", installed_targets() + ["roofline-cpu"])
def test_every_installed_backend_meets_the_contract(name, plugin_on_path):
    assert name in registry.registered()
    cls = type(registry.get(name))
    notes = check_target(cls)
    if name in ("host-cpu", "torch-eager", "onnxruntime", "openvino", "roofline-cpu"):
        assert notes == []  # these run here: the whole path was exercised
    for note in notes:
        assert note.startswith(name)


def test_contract_catches_a_broken_backend():
    from targets.baselines.torch_eager import TorchEagerTarget

    class Liar(TorchEagerTarget):
        name = "liar"
        figures = "modeled"  # declares modeled figures but measures with a wall clock

    with pytest.raises(AssertionError, match="liar: a modeled target attaches no meters"):
        check_target(Liar)
    Liar.default_meters = lambda self: []
    with pytest.raises(AssertionError, match="declares modeled figures but reported 'measured:perf_counter'"):
        check_target(Liar)


CAMPAIGN = """
[[models]]
name = "smallcnn-digits"

[[compression]]
name = "dense"
[[compression]]
scheme = "block"
sparsity = 0.75

[[targets]]
name = "host-cpu"

[[targets]]
name = "roofline-cpu"
peak_gflops = 200.0
efficiency = 0.25
power_w = 4.0
"""


@pytest.fixture(scope="module")
def modeled_run(tmp_path_factory, plugin_dir):
    d = tmp_path_factory.mktemp("modeled")
    camp = write_campaign(d / "c.toml", CAMPAIGN, name="modeled")
    listing = run_cli("targets", check=True, path=[plugin_dir]).stdout
    assert "roofline-cpu" in listing and "example backend" in listing
    run_cli("run", camp, "--out", d / "run", check=True, path=[plugin_dir])
    return d / "run"


def test_modeled_rows_are_labelled_and_exact(modeled_run):
    df = pd.read_parquet(modeled_run / "measurements.parquet")
    assert (df["status"] == "ok").all() and df["verified"].all()
    model, host = df[df["target"] == "roofline-cpu"], df[df["target"] == "host-cpu"]
    assert (model["latency_kind"] == "modeled").all() and (host["latency_kind"] == "measured").all()
    assert (model["provenance"] == "modeled:roofline@1, modeled:roofline@1").all()
    for r in model.itertuples():
        seconds = 2 * r.macs_effective / (200e9 * 0.25)
        assert r.latency_ms == pytest.approx(seconds * 1e3, rel=1e-12)
        assert r.energy_total_mj_per_inf == pytest.approx(4.0 * seconds * 1e3, rel=1e-12)
        assert r.energy_mj_per_inf == pytest.approx(3.0 * seconds * 1e3, rel=1e-12)  # minus 1 W idle
        assert json.loads(r.model_inputs)["latency"]["macs"] == r.macs_effective
    # no fake statistics on a deterministic figure
    assert model[["latency_ms_p50", "latency_cv", "latency_ms_ci_low", "runs"]].isna().all().all()
    assert model["latency_note"].str.contains("no distribution").all()
    assert (host["latency_ms"] == host["latency_ms_p50"]).all() and host["latency_cv"].notna().all()
    # the block-pruned variant is modeled on the MACs actually compiled: fewer than dense
    assert model.set_index("variant")["latency_ms"].idxmin() != "dense"


def test_report_and_plots_keep_the_kinds_apart(modeled_run):
    md = (modeled_run / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert "latency kind" in header and "energy kind" in header
    rows = [line for line in md.splitlines() if "roofline-cpu" in line]
    assert rows and all("| modeled |" in r for r in rows)
    assert "never averaged together" in md
    lat = (modeled_run / "plots" / "latency.svg").read_text()
    assert "modeled: one deterministic figure" in lat and "measured: box of samples" in lat
    eff = (modeled_run / "plots" / "efficiency.svg").read_text()
    assert "figure kind" in eff and "[modeled]" in eff and "<pattern" in eff  # hatched bars


def test_results_are_versioned_and_old_formats_read(modeled_run, tmp_path):
    meta = pq.read_schema(modeled_run / "measurements.parquet").metadata
    assert meta[b"joulebench.format_version"] == b"2"
    assert json.loads((modeled_run / "manifest.json").read_text())["format_version"] == 2
    # a format-1 directory (no version, every figure measured) is read and upgraded
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text((modeled_run / "manifest.json").read_text())
    df = pd.read_parquet(modeled_run / "measurements.parquet")
    v1 = df[df["target"] == "host-cpu"].drop(columns=["latency_ms", "latency_kind", "latency_provenance",
                                                      "energy_kind", "energy_provenance", "model_inputs"])
    v1.to_parquet(old / "measurements.parquet", index=False)
    md = run_cli("report", old, check=True).stdout
    assert "| measured |" in md
    # a newer format is refused in one line
    import pyarrow as pa

    t = pa.Table.from_pandas(v1).replace_schema_metadata({b"joulebench.format_version": b"99"})
    pq.write_table(t, old / "measurements.parquet")
    for cmd in ("report", "plot"):
        r = run_cli(cmd, old)
        assert r.returncode == 2 and "results format version 99" in r.stderr and len(r.stderr.splitlines()) == 1


def test_modeled_targets_take_no_meters(tmp_path, plugin_dir):
    camp = write_campaign(tmp_path / "c.toml", '[[models]]\nname = "smallcnn-digits"\n[[targets]]\n'
                          'name = "roofline-cpu"\nmeters = ["rapl"]\n')
    r = run_cli("run", camp, "--out", tmp_path / "run", path=[plugin_dir])
    assert r.returncode == 2 and "targets[0].meters: roofline-cpu reports modeled figures" in r.stderr
    assert not (tmp_path / "run").exists()


def test_resume_on_another_commit_or_host_needs_allow_mixed(modeled_run, tmp_path, plugin_dir):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(modeled_run, run)
    m = json.loads((run / "manifest.json").read_text())
    m["origins"] = [{"git_commit": "0123abc", "host": "elsewhere"}]
    (run / "manifest.json").write_text(json.dumps(m))
    camp = modeled_run.parent / "c.toml"
    r = run_cli("run", camp, "--out", run, "--resume", path=[plugin_dir])
    assert r.returncode == 2 and "was run on commit 0123abc at host elsewhere" in r.stderr and "--allow-mixed" in r.stderr
    r = run_cli("run", camp, "--out", run, "--resume", "--allow-mixed", check=True, path=[plugin_dir])
    assert "mixed run: cells come from commit 0123abc at host elsewhere" in (run / "report.md").read_text()


def test_compressed_variant_keeps_its_batch(tmp_path):
    from pruning.compress import CompressionSpec, make_variant
    from pruning.store import load_variant, save_variant
    from pruning.variant import ModelSpec

    spec = CompressionSpec(scheme="block", sparsity=0.5)
    v4 = make_variant(ModelSpec(name="smallcnn-digits", batch=4), spec)
    again = make_variant(ModelSpec(name="smallcnn-digits", batch=4), spec)  # from the cache
    v1 = make_variant(ModelSpec(name="smallcnn-digits"), spec)
    assert v4.input_shape == again.input_shape == (4, 3, 32, 32) and v1.input_shape == (1, 3, 32, 32)
    assert v4.manifest["input_shape"] == [4, 3, 32, 32] and v4.hash == again.hash != v1.hash
    assert again.reference_output.shape == (4, 10)
    assert load_variant(save_variant(v4, tmp_path / "v")).input_shape == (4, 3, 32, 32)
