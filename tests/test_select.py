"""joulebench select: QoE parsing, a hand-computed LinUCB step, regret accounting, the device model, the simulation,
the recommendation and one-line errors. Runs are built from rows (bench.rows.frame + RunStore) to stay fast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bench import rows as row_model
from bench.select import Arm, SelectError, load_arms
from bench.select import bandits as B
from bench.select import simulate as S
from bench.select.cli import select_command
from bench.select.qoe import DEFAULT_PARAMS, QoEError, build, load_toml, parse
from bench.select.recommend import recommend, render
from bench.store import RunStore, StoreError

HOST = "host:Test CPU"


def _row(variant: str, *, bits: int, sparsity: float, macs: int, params_kept: int, acc: float, lat: float,
         ci: tuple[float, float] | None = None, target: str = "host-cpu", device: str = HOST, **extra) -> dict:
    r = {"campaign": "t", "run_id": "r1", "cell_id": f"{variant}-{target}", "model": "smallcnn-digits",
         "variant": variant, "scheme": "block" if sparsity else "none", "sparsity": sparsity, "bits": bits,
         "precision": "fp32" if bits == 32 else f"int{bits}", "target": target, "device": device, "status": "ok",
         "latency_ms": lat, "latency_kind": "measured", "latency_provenance": "measured:tvm.time_evaluator",
         "macs_dense": 29_213_952, "macs_effective": macs, "macs_masked": macs, "params": 295_978,
         "params_kept": params_kept, "accuracy": acc, "accuracy_dataset": "digits"}
    if ci:
        r["latency_ms_ci_low"], r["latency_ms_ci_high"] = ci
    r.update(extra)
    return r


ROWS = [
    _row("dense", bits=32, sparsity=0.0, macs=29_213_952, params_kept=295_978, acc=0.95, lat=4.0, ci=(3.9, 4.1)),
    _row("block8x16-s0.5", bits=32, sparsity=0.5, macs=15_049_984, params_kept=149_546, acc=0.93, lat=2.2,
         ci=(2.1, 2.3)),
    _row("block8x16-s0.75-w8a8", bits=8, sparsity=0.75, macs=7_968_000, params_kept=76_330, acc=0.90, lat=0.9,
         ci=(0.85, 0.95)),
    _row("block8x16-s0.875-w2a8", bits=2, sparsity=0.875, macs=4_427_008, params_kept=39_722, acc=0.80, lat=0.8,
         ci=(0.7, 0.9)),
    # the same int8 variant on an FPGA board: modeled seconds and joules, as fpga-sim records them
    _row("block8x16-s0.75-w8a8", bits=8, sparsity=0.75, macs=7_968_000, params_kept=76_330, acc=0.90, lat=0.2,
         target="fpga-sim", device="fpga-sim:zcu104", board="zcu104", latency_kind="modeled",
         latency_provenance="modeled:fpga-latency@1", energy_mj_per_inf=0.12, energy_kind="modeled",
         energy_provenance="modeled:fpga-power@1"),
]


def make_run(path: Path, rows: list[dict]) -> Path:
    store = RunStore(path)
    store.init({"campaign": "t"})
    row_model.write(row_model.frame(rows), path / "measurements.parquet")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("select") / "run", ROWS)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode="rich")  # as bench/cli.py's app
    app.command(name="select")(select_command)
    app.command(name="noop")(lambda: None)  # two commands, so `select` is a subcommand as in bench/cli.py
    return app


def cli(*args: str):
    return CliRunner().invoke(_app(), ["select", *map(str, args)])


# ------------------------------------------------------------------------------------------------------ QoE
def test_default_qoe_by_hand() -> None:
    q = parse(None)
    # 0.9 - 1.0 * (40/33 - 1) - 0.05 * 5/10
    assert q({"accuracy": 0.9, "latency_ms": 40.0, "energy_mj": 5.0}) == pytest.approx(0.9 - 7 / 33 - 0.025)
    # the latency penalty saturates at w_latency once the latency reaches twice the deadline
    assert q({"accuracy": 0.9, "latency_ms": 500.0, "energy_mj": 0.0}) == pytest.approx(-0.1)
    assert q({"accuracy": 0.9, "latency_ms": 10.0, "energy_mj": 0.0}) == pytest.approx(0.9)
    # per-call parameters and arrays broadcast (the simulator's users)
    v = q({"accuracy": np.array([[0.9, 0.8]]), "latency_ms": np.array([[20.0, 10.0]]), "energy_mj": 0.0},
          {"deadline_ms": np.array([[10.0], [40.0]])})
    assert v == pytest.approx(np.array([[-0.1, 0.8], [0.9, 0.8]]))


def test_custom_qoe_params_and_toml(tmp_path: Path) -> None:
    q = build("accuracy - lam * energy_mj + (latency_ms <= deadline_ms) * 0.1", None,
              ["lam=0.5", "deadline_ms=2"])
    assert q({"accuracy": 0.5, "energy_mj": 0.2, "latency_ms": 1.0}) == pytest.approx(0.5 - 0.1 + 0.1)
    assert q({"accuracy": 0.5, "energy_mj": 0.2, "latency_ms": 3.0}) == pytest.approx(0.4)
    f = tmp_path / "qoe.toml"
    f.write_text('expr = "accuracy - w * log(latency_ms)"\n[params]\nw = 0.25\n')
    assert load_toml(f) == ("accuracy - w * log(latency_ms)", {"w": 0.25})
    q = build(None, f, ["w=1"])  # the command line overrides the file
    assert q({"accuracy": 1.0, "latency_ms": math.e}) == pytest.approx(0.0)
    assert build(None, f, []).params["w"] == 0.25
    assert parse(None).params == DEFAULT_PARAMS


@pytest.mark.parametrize(("expr", "needle"), [
    ("acuracy - latency_ms", "unknown name 'acuracy' (did you mean 'accuracy'?)"),
    ("accuracy -", "syntax error"),
    ("__import__('os').system('true')", "unknown function"),
    ("accuracy.real", "is not allowed"),
    ("(lambda: 1)()", "unknown function"),
    ("accuracy // 2", "operator '//' is not allowed"),
    ("'text'", "only numbers"),
    ("max(accuracy)", "max() takes 2 arguments, got 1"),
    ("exp", "is a function"),
    ("open('x')", "unknown function 'open'"),
    ("", "empty expression"),
])
def test_bad_qoe_one_line(expr: str, needle: str) -> None:
    with pytest.raises(QoEError) as e:
        parse(expr)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and msg.startswith("--qoe: ")


def test_bad_params_one_line(tmp_path: Path) -> None:
    for params, needle in ((["deadline"], "expected NAME=VALUE"), (["deadline_ms=fast"], "expected a number")):
        with pytest.raises(QoEError, match=needle):
            build(None, None, params)
    f = tmp_path / "q.toml"
    f.write_text("[params]\nw_energy = 'high'\n")
    with pytest.raises(QoEError, match=r"params.w_energy: expected a number"):
        build(None, f, [])
    with pytest.raises(QoEError, match="QoE file not found"):
        build(None, tmp_path / "none.toml", [])


# --------------------------------------------------------------------------------------------------- bandits
def test_linucb_step_by_hand() -> None:
    lin = B.HybridLinUCB(n_devices=1, n_arms=2, dim=2, alpha=1.0, ridge=1.0, offset_ridge=1.0)
    lin.update(0, 0, np.array([1.0, 2.0]), 1.0)
    # Algorithm 2 of Li et al. with x = [1]: A_a = 1 + 1 = 2, B_a = z = [1, 2], b_a = 1;
    # A0 = I + z z^T - B^T B / 2 = [[1.5, 1], [1, 3]], b0 = r z - B^T b / 2 = [0.5, 1]
    assert lin.A0 == pytest.approx(np.array([[1.5, 1.0], [1.0, 3.0]]))
    assert lin.b0 == pytest.approx(np.array([0.5, 1.0]))
    assert (lin.a[0, 0], lin.b[0, 0]) == (2.0, 1.0) and lin.B[0, 0] == pytest.approx(np.array([1.0, 2.0]))
    # A0^-1 = [[3, -1], [-1, 1.5]] / 3.5; beta = A0^-1 b0 = [1/7, 2/7]; offset_0 = (1 - B beta) / 2 = 1/7
    assert lin.A0_inv == pytest.approx(np.array([[6 / 7, -2 / 7], [-2 / 7, 3 / 7]]))
    assert lin.beta == pytest.approx(np.array([1 / 7, 2 / 7]))
    assert lin.offsets(0) == pytest.approx(np.array([1 / 7, 0.0]))
    Z = np.array([[0.0, 1.0], [1.0, 0.0]])
    # arm 0, z = [0, 1]: mean 2/7 + 1/7; s = 3/7 - 2 (4/7) / 2 + 1/2 + (10/7) / 4 = 5/7
    # arm 1 (never played), z = [1, 0]: mean 1/7; s = 6/7 + 1 = 13/7
    assert lin.mean(0, Z) == pytest.approx(np.array([3 / 7, 1 / 7]))
    assert lin.variance(0, Z) == pytest.approx(np.array([5 / 7, 13 / 7]))
    assert lin.ucb(0, Z) == pytest.approx(np.array([3 / 7 + math.sqrt(5 / 7), 1 / 7 + math.sqrt(13 / 7)]))
    assert lin.choose(0, Z) == 1  # 1.5056 > 1.2737: the untried arm's width wins
    lin.alpha = 0.1  # 0.5131 > 0.2791: the better mean wins
    assert lin.choose(0, Z) == 0


def test_hybrid_linucb_is_the_joint_ridge_regression() -> None:
    """After any updates, beta, the offsets and s equal those of one ridge regression on [z, onehot(device, arm)]
    with penalties ridge (beta) and offset_ridge (offsets): the algorithm only reorganizes that solve."""
    rng = np.random.default_rng(7)
    n_dev, n_arm, k = 2, 3, 3
    lin = B.HybridLinUCB(n_dev, n_arm, k, alpha=1.0, ridge=0.5, offset_ridge=2.0)
    rows, rewards = [], []
    for _ in range(25):
        d, a, z, r = int(rng.integers(n_dev)), int(rng.integers(n_arm)), rng.normal(size=k), float(rng.normal())
        lin.update(d, a, z, r)
        rows.append(np.concatenate([z, np.eye(n_dev * n_arm)[d * n_arm + a]]))
        rewards.append(r)
    phi = np.array(rows)
    M = np.diag([0.5] * k + [2.0] * (n_dev * n_arm)) + phi.T @ phi
    w = np.linalg.solve(M, phi.T @ np.array(rewards))
    assert lin.beta == pytest.approx(w[:k])
    for d in range(n_dev):
        assert lin.offsets(d) == pytest.approx(w[k + d * n_arm: k + (d + 1) * n_arm])
        Z = rng.normal(size=(n_arm, k))
        joint = np.hstack([Z, np.eye(n_dev * n_arm)[d * n_arm: (d + 1) * n_arm]])
        assert lin.mean(d, Z) == pytest.approx(joint @ w)
        assert lin.variance(d, Z) == pytest.approx(np.einsum("ki,ij,kj->k", joint, np.linalg.inv(M), joint))


def test_thompson_and_egreedy_share_the_hybrid_model() -> None:
    ts = B.HybridTS(1, 2, 2, v=0.0, offset_ridge=1.0)
    eg = B.HybridEpsGreedy(1, 2, 2, epsilon=0.0, offset_ridge=1.0)
    Z = np.array([[0.0, 1.0], [1.0, 0.0]])
    for pol in (ts, eg):
        pol.update(0, 0, np.array([1.0, 2.0]), 1.0)
        assert pol.beta == pytest.approx(np.array([1 / 7, 2 / 7]))
        assert pol.choose(0, Z) == 0  # v = 0 / epsilon = 0: the greedy arm (3/7 > 1/7)
    always = B.HybridEpsGreedy(1, 2, 2, epsilon=1.0, seed=0)
    picks = [always.choose(0, Z) for _ in range(200)]
    assert 70 < sum(picks) < 130  # epsilon = 1: uniform


def test_neuralucb_gradients_match_torch() -> None:
    import torch

    nn = B.NeuralUCB(n_arms=3, dim=5, hidden=8, seed=1)
    z = np.array([[0.3, -1.2, 1.0, 0.0, 0.0], [2.0, 0.5, 0.0, 0.0, 1.0]])
    f, g = nn.forward_and_grads(z)
    for i in range(2):
        nn.net.zero_grad()
        out = nn.net(torch.tensor(z[i:i + 1], dtype=torch.float32)).sum()
        out.backward()
        assert f[i] == pytest.approx(float(out), rel=1e-5)
        ref = np.concatenate([p.grad.numpy().ravel() for p in nn.net.parameters()])
        assert g[i] == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_regret_accounting() -> None:
    q = np.array([[0.9, 0.5, 0.1], [0.2, 0.6, 0.4]])
    seq = np.array([0, 1, 1, 0, 1])
    X = np.zeros((2, 3, 1))
    noise = np.zeros(5)
    picks, regret = S.run_policy(B.FixedPolicy("common", np.array([0, 0])), seq, X, q, noise)
    assert picks.tolist() == [0, 0, 0, 0, 0]
    assert regret == pytest.approx([0.0, 0.4, 0.4, 0.0, 0.4]) and regret.sum() == pytest.approx(1.2)
    _, regret = S.run_policy(B.FixedPolicy("oracle", q.argmax(axis=1)), seq, X, q, noise)
    assert regret == pytest.approx(np.zeros(5))
    # a learner is charged its pick's expected QoE, never the noisy reward it saw
    picks, regret = S.run_policy(B.RandomPolicy(3, seed=4), seq, X, q, np.full(5, 10.0))
    assert regret == pytest.approx(q.max(axis=1)[seq] - q[seq, picks])
    # the pick per device over the last 3 rounds: device 1 -> arm 1 twice (rounds 2 and 4), device 0 -> arm 2
    agree, mode = S.agreement(np.array([0, 0, 1, 2, 1]), seq, np.array([0, 1]), window=3)
    assert mode == {0: 2, 1: 1} and agree == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- device model
def _arm(bits: int, sparsity: float, macs: float, kept: float, precision: str | None = None) -> Arm:
    return Arm(model="m", variant=f"b{bits}-s{sparsity}", scheme="block", sparsity=sparsity, bits=bits,
               precision=precision or ("fp32" if bits == 32 else f"int{bits}"), macs_dense=29_213_952,
               macs_effective=macs, params=295_978, params_kept=kept, accuracy=0.9, accuracy_dataset="digits",
               campaign="t")


def test_execution_paths() -> None:
    int8, ternary, dense = _arm(8, 0.75, 7.968e6, 76_330), _arm(2, 0.875, 4.427e6, 39_722), _arm(32, 0, 29.2e6, 3e5)
    assert [S.path_of(a, "fpga-board") for a in (dense, int8, ternary)] == ["arm-fp32", "int8", "lowbit2"]
    assert [S.path_of(a, "mobile-gpu") for a in (dense, int8, ternary)] == ["fp32", "fp16", "fp16"]
    assert S.path_of(_arm(32, 0, 1, 1, "fp16"), "mobile-gpu") == "fp16"
    assert [S.path_of(a, "cpu") for a in (dense, int8, ternary)] == ["fp32", "int8", "int8"]


def test_fpga_roofline_by_hand() -> None:
    from targets.devices.catalog import board
    from targets.fpga.power import F_REF_HZ, Resources, fitted

    spec = S.fpga_spec(board("zcu104"))
    int8 = _arm(8, 0.75, 7_968_000, 76_330)
    p = S.predict(int8, spec)
    # peak int8 = 2 ops x 100 MHz x 1728 DSP x 2 MACs = 691.2 GOP/s; at eta 0.5: 15.936 MOP -> 46.11 us (compute
    # bound: 76330 B at 19.2 GB/s x 0.75 is 5.30 us) + 50 us overhead
    assert p.path == "int8" and p.bound == "compute"
    assert p.latency_ms == pytest.approx((50e-6 + 15.936e6 / (691.2e9 * 0.5)) * 1e3)
    part = board("zcu104").part
    share = Resources(lut=part.lut.value / 2, ff=part.ff.value / 2, dsp=part.dsp.value / 2,
                      bram36=part.bram36.value / 2, uram=part.uram.value / 2).fabric_share()
    c = fitted()
    expect = c.k_pl_w * (100e6 / F_REF_HZ) * share * p.latency_ms / 1e3 + c.e_ddr_j_per_bit * 8 * 76_330
    assert p.energy_mj == pytest.approx(expect * 1e3)
    assert p.latency_provenance == "modeled:select-roofline@1"
    # precision support: a ternary variant gains on the FPGA's LUTs, not on a GPU (fp16 at best)
    # ternary: DSPs (691.2 GOP/s) + LUTs: 2 ops x 100 MHz x 230400 LUT x 0.5 / (8 x 2) LUT per MAC = 1440 GOP/s
    ternary = _arm(2, 0.75, 7_968_000, 76_330)
    pt = S.predict(ternary, spec)
    assert pt.path == "lowbit2" and pt.latency_ms == pytest.approx((50e-6 + 15.936e6 / (2131.2e9 * 0.5)) * 1e3)
    assert pt.latency_ms - 0.05 < (p.latency_ms - 0.05) / 3  # 3.08x the int8 rate beyond the fixed overhead
    gpu = S.DeviceSpec(name="g", kind="mobile-gpu", base="g", source="test", peak_ops={"fp32": 1e12, "fp16": 2e12},
                       bandwidth_bytes_s=30e9, active_w={"fp32": 3.0, "fp16": 3.0}, overhead_s=0.0)
    g8, g2 = S.predict(int8, gpu), S.predict(ternary, gpu)
    assert g8.bound == g2.bound == "compute" and g8.latency_ms == pytest.approx(g2.latency_ms)
    # the GPU's block-sparse kernels skip half the pruned work: 29.2M x (1 - 0.5 x 0.75) MACs at 2 TFLOP/s x 0.5
    assert g8.latency_ms == pytest.approx(2 * 29_213_952 * (1 - 0.375) / (2e12 * 0.5) * 1e3)


def test_gpu_spec_reads_catalog_entries_defensively() -> None:
    typed = {"kind": "mobile-gpu", "key": "x1", "name": "X1", "compute": {"fp32_gflops": {"value": 500.0,
             "source": "s"}, "fp16_gflops": {"value": 1000.0, "source": "s"}},
             "memory": {"peak_gbps": {"value": 25.6, "source": "s"}}, "power": {"load_w": {"value": 2.0,
                                                                                             "source": "s"}}}
    spec = S.gpu_spec(typed)
    assert spec.peak_ops == {"fp32": 500e9, "fp16": 1000e9}
    assert spec.bandwidth_bytes_s == pytest.approx(25.6e9) and spec.active_w["fp16"] == 2.0
    assert not spec.power_assumed
    bare = S.gpu_spec({"kind": "mobile-gpu", "key": "x2", "name": "X2", "peak_fp32_tflops": 1.5, "power": {}})
    assert bare.peak_ops["fp16"] == 1.5e12 and bare.power_assumed and math.isinf(bare.bandwidth_bytes_s)
    assert S.gpu_spec({"kind": "mobile-gpu", "key": "x3", "name": "X3"}) is None


# ---------------------------------------------------------------------------------------------- arms and runs
def test_arms_keep_features_and_provenance(run_dir: Path) -> None:
    arms = {a.key: a for a in load_arms([run_dir])}
    assert len(arms) == 4
    a = arms["smallcnn-digits/block8x16-s0.75-w8a8"]
    assert (a.bits, a.sparsity, a.macs_effective, a.accuracy) == (8, 0.75, 7_968_000, 0.90)
    kinds = {(o.target, o.latency_kind, o.latency_provenance, o.energy_provenance) for o in a.observations}
    assert kinds == {("host-cpu", "measured", "measured:tvm.time_evaluator", None),
                     ("fpga-sim", "modeled", "modeled:fpga-latency@1", "modeled:fpga-power@1")}


def test_empty_and_missing_runs_one_line(tmp_path: Path) -> None:
    empty = make_run(tmp_path / "empty", [])
    with pytest.raises(SelectError, match=r"empty run \(no rows\): nothing to select from"):
        load_arms([empty])
    failed = make_run(tmp_path / "failed", [{**ROWS[0], "status": "failed", "latency_ms": None}])
    with pytest.raises(SelectError, match=r"1 rows, none finished ok"):
        load_arms([failed])
    (tmp_path / "bare").mkdir()
    with pytest.raises(StoreError, match="no measurements.parquet here"):
        load_arms([tmp_path / "bare"])
    with pytest.raises(SelectError, match="no such run directory"):
        load_arms([tmp_path / "nope"])
    for args in ([empty], [tmp_path / "nope"], [empty, "--simulate", "5", "--rounds", "10"]):
        r = cli(*args)
        assert r.exit_code == 2
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), r.output


def test_cli_bad_qoe_and_algo_one_line(run_dir: Path) -> None:
    for args, needle in (([run_dir, "--qoe", "accuracy - latncy_ms"], "unknown name 'latncy_ms'"),
                         ([run_dir, "--qoe", "accuracy +* 2"], "syntax error"),
                         ([run_dir, "--algo", "ucb1"], "--algo: unknown algorithm 'ucb1'"),
                         ([run_dir, "-p", "deadline_ms"], "--param: expected NAME=VALUE")):
        r = cli(*args)
        assert r.exit_code == 2, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], r.output


def test_no_accuracy_needs_a_qoe_without_it(tmp_path: Path) -> None:
    seeded = make_run(tmp_path / "seeded", [{**ROWS[0], "accuracy": None}])
    with pytest.raises(SelectError, match="no variant in the runs has one"):
        recommend(load_arms([seeded]), parse(None), rounds=0)
    out = recommend(load_arms([seeded]), parse("-latency_ms"), rounds=0)
    assert out["devices"][0]["expected_qoe"] == pytest.approx(-4.0)


# ------------------------------------------------------------------------------------------------ recommend
def test_recommend_by_hand(run_dir: Path) -> None:
    q = parse(None, {"deadline_ms": 2.0, "w_energy": 0.0})
    res = recommend(load_arms([run_dir]), q, rounds=300, seed=0)
    by = {d["device"]: d for d in res["devices"]}
    host = by[f"host-cpu@{HOST}"]
    # dense: 0.95 - (4/2 - 1) = -0.05; s0.5: 0.93 - 0.1 = 0.83; int8: 0.90; ternary: 0.80 (all measured)
    assert host["recommended"] == "smallcnn-digits/block8x16-s0.75-w8a8"
    assert host["expected_qoe"] == pytest.approx(0.90) and host["margin"] == pytest.approx(0.07)
    assert host["runner_up"] == "smallcnn-digits/block8x16-s0.5"
    assert host["latency_provenance"] == "measured:tvm.time_evaluator"
    assert "assumed" in host["energy_provenance"]  # no energy in the rows: 10 W assumed, and said so
    assert 0.95 <= host["confidence"] <= 1.0  # CIs of +-5 % cannot close a 0.07 gap often
    assert host["linucb_pick"] == host["recommended"]
    fpga = by["zcu104"]  # the catalog board: its row for the int8 variant, the model for the others
    assert fpga["described_by"] == "catalog:zcu104" and fpga["candidates"] == 4
    src = {c["variant"]: (c["from"], c["latency_provenance"]) for c in fpga["all"]}
    assert src["smallcnn-digits/block8x16-s0.75-w8a8"] == ("row", "modeled:fpga-latency@1")
    assert src["smallcnn-digits/dense"] == ("model", "modeled:select-roofline@1")
    md, csv, js = (render(res, f) for f in ("md", "csv", "json"))
    assert "| host-cpu@host:Test CPU | cpu | smallcnn-digits/block8x16-s0.75-w8a8 | 0.9 |" in md
    assert csv.splitlines()[0].startswith("device,kind,recommended,expected_qoe,confidence")
    assert json.loads(js)["devices"][0]["all"]


# ----------------------------------------------------------------------------------------------- simulation
def test_simulation_is_seeded_and_learns(run_dir: Path) -> None:
    arms = load_arms([run_dir])
    cfg = S.SimConfig(n_devices=12, rounds=2500, seed=3, window=500, algos=("linucb", "egreedy"))
    s1, c1 = S.simulate(arms, parse(None), cfg)
    s2, _ = S.simulate(arms, parse(None), cfg)
    a = s1["algorithms"]
    assert {k: v["cumulative_regret"] for k, v in a.items()} == \
        {k: v["cumulative_regret"] for k, v in s2["algorithms"].items()}
    assert a["oracle"]["cumulative_regret"] == 0.0 and a["oracle"]["oracle_agreement_last_window"] == 1.0
    assert c1["linucb"][-1] == pytest.approx(a["linucb"]["cumulative_regret"], abs=1e-3)
    assert np.all(np.diff(c1["random"]) >= -1e-12)  # regret is never negative against the oracle
    # the common model is the best single arm on average, so no other single arm beats it
    q = np.array([[d["figures"][k]["qoe"] for k in d["figures"]] for d in s1["devices"]])
    keys = list(s1["devices"][0]["figures"])
    assert s1["common_arm"] == keys[int(q.mean(axis=0).argmax())]
    assert a["linucb"]["cumulative_regret"] < 0.5 * a["common"]["cumulative_regret"]
    assert a["linucb"]["cumulative_regret"] < a["random"]["cumulative_regret"] / 4
    kinds = {d["kind"] for d in s1["devices"]}
    assert {"fpga-board", "cpu"} <= kinds
    prov = {f["prior_source"] for d in s1["devices"] for f in d["figures"].values()}
    assert {"measured:tvm.time_evaluator", "modeled:select-roofline@1"} <= prov


def test_cli_simulate_json_and_plots(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    r = cli(run_dir, "--simulate", "8", "--rounds", "400", "--compare", "linucb,neuralucb,thompson,egreedy",
            "--json", "--out", out, "--seed", "1")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert set(summary["algorithms"]) == {"linucb", "neuralucb", "thompson", "egreedy", "random", "common",
                                          "prior", "oracle"}
    assert summary["n_devices"] == 8 and summary["rounds"] == 400 and summary["chosen"]["algo"] == "linucb"
    assert summary == json.loads((out / "select-simulation.json").read_text())
    for name in ("select-regret.png", "select-regret.svg", "select-regret.csv"):
        assert (out / name).stat().st_size > 1000
