"""Android targets: OpenCL compile-only builds, and the whole remote path against a phone stand-in
(local shell or the ADB protocol, a real TVM RPC server and tracker on 127.0.0.1, a fake battery)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.api import TargetError
from pruning.compress import CompressionSpec, make_variant
from pruning.variant import ModelSpec
from pruning.zoo import ZOO
from targets.android.remote import DeviceOptions, RemoteSession, parse_snapshot
from targets.android.target import AndroidGPUTarget
from tests.conftest import run_cli, write_campaign
from tests.fake_adbd import FakeAdbd
from tests.phone import device_tree, free_port, tvm_rpc_standin

PROTOCOL = ("\n[protocol]\nwarmup_runs = 2\nwarmup_s = 0\nmin_runs = 10\nmin_duration_s = 0.2\nrepeats = 2\n"
            "idle_s = 0.4\n")


# The default run covers every model and every profile once (6 minutes for all 12 pairs here); -m slow adds the rest.
_COVER = {("resnet18-cifar", "adreno-texture"), ("vgg16-cifar", "adreno"), ("mobilenetv2-cifar", "mali"),
          ("resnet50-cifar", "adreno")}


@pytest.mark.parametrize(("model", "profile"), [
    pytest.param(m, p, marks=() if (m, p) in _COVER else pytest.mark.slow)
    for m in ZOO if m.endswith("-cifar") for p in ("adreno", "adreno-texture", "mali")])
def test_compile_only_opencl_builds_hold_kernels(tmp_path, model, profile):
    target = AndroidGPUTarget()
    v = make_variant(ModelSpec(name=model), CompressionSpec())
    manifest = target.compile(v, target.parse_options({"profile": profile}), tmp_path)
    assert (tmp_path / "model.tar").stat().st_size > 0 and not (tmp_path / "model.so").exists()  # no NDK here
    source = (tmp_path / "kernels.cl").read_text()
    assert "__kernel" in source and manifest["opencl_source_bytes"] == len(source)
    assert len(manifest["kernels"]) >= 5 and all(k["bytes"] > 0 for k in manifest["kernels"])
    assert sum(k["bytes"] for k in manifest["kernels"]) <= len(source)
    assert manifest["loadable"] is False
    assert manifest["macs_effective"] == v.manifest["macs_dense"]  # every profile accounts for all the work


def test_block_sparse_variant_compiles_the_shared_kernel_for_the_gpu(tmp_path):
    target = AndroidGPUTarget()
    v = make_variant(ModelSpec(name="resnet18-cifar"), CompressionSpec(scheme="block", sparsity=0.875))
    manifest = target.compile(v, target.parse_options({"profile": "adreno"}), tmp_path)
    assert manifest["macs_effective"] == v.manifest["macs_effective"]  # only the kept columns, on the GPU too
    assert any(k["name"].startswith("jb_conv") for k in manifest["kernels"])
    tex = target.compile(v, target.parse_options({"profile": "adreno-texture"}), tmp_path / "t" if
                         (tmp_path / "t").mkdir() is None else tmp_path)
    assert tex["lowering"] == "tvm" and "compressed layers compile dense" in tex["lowering_note"]


@pytest.mark.parametrize("bits", [4, 2, 1])
def test_low_bit_block_variants_compile_for_the_gpu(tmp_path, bits):
    # the packed weights' unpack kernel stays its own launch (fused with the reshape, FuseTIR refused it)
    target = AndroidGPUTarget()
    v = make_variant(ModelSpec(name="smallcnn-digits"),
                     CompressionSpec(scheme="block", sparsity=0.75, block="8x16", bits=bits))
    manifest = target.compile(v, target.parse_options({"profile": "adreno"}), tmp_path)
    names = [k["name"] for k in manifest["kernels"]]
    assert any(n.startswith("jb_unpack") for n in names) and any(n.startswith("jb_conv") for n in names)


@pytest.fixture
def phone(tmp_path):
    root = device_tree(tmp_path / "phone")
    return {"root": root, "tvm_rpc": tvm_rpc_standin(tmp_path / "tvm_rpc"), "port": free_port(),
            "workdir": root / "data/local/tmp/jb"}


def _target_entry(phone, device, **extra) -> str:
    lines = ['name = "android-cpu"', f'device = "{device}"', 'profile = "host"', f'tvm_rpc = "{phone["tvm_rpc"]}"',
             f'workdir = "{phone["workdir"]}"', f'rpc_port = {phone["port"]}']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "[[targets]]\n" + "\n".join(lines) + "\n"


def _servers_left(port: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"tvm.exec.rpc_server.*--port {port}"], capture_output=True, text=True)
    return len(out.stdout.split())


def _check_remote_run(tmp_path, phone, df) -> None:
    row = df[df["target"] == "android-cpu"].iloc[0]
    assert row["status"] == "ok" and row["verified"] and row["latency_ms_p50"] > 0, row["message"]
    assert row["macs_effective"] == row["macs_masked"]  # the block-sparse kernel, run over RPC
    # the fake battery draws 0.6 A at 3.9 V: 2.34 W, sampled on the "device" and pulled afterwards
    assert row["avg_power_w"] == pytest.approx(2.34) and row["idle_power_w"] == pytest.approx(2.34)
    assert row["energy_total_mj_per_inf"] == pytest.approx(2.34 * row["latency_ms_mean"], rel=0.25)
    assert row["provenance"] == "measured:tvm.time_evaluator, measured:android-battery"
    assert "unit=uA sign=-1" in row["energy_note"] and row["power_samples"] >= 10
    assert not phone["workdir"].exists() or not any(phone["workdir"].iterdir())  # cleaned up
    assert _servers_left(phone["port"]) == 0


BODY = '[[models]]\nname = "smallcnn-digits"\n[[compression]]\nscheme = "block"\nsparsity = 0.75\n'


def test_remote_path_end_to_end_over_a_local_shell(tmp_path, phone):
    f = write_campaign(tmp_path / "c.toml", BODY + _target_entry(phone, f"local:{phone['root']}")
                       + '[[targets]]\nname = "android-gpu"\nprofile = "mali"\n', protocol=PROTOCOL)
    r = run_cli("run", f, "--out", tmp_path / "run", check=True)
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet")
    _check_remote_run(tmp_path, phone, df)
    gpu = df[df["target"] == "android-gpu"].iloc[0]
    assert gpu["status"] == "compiled" and gpu["message"].startswith("compiled, not run: no device given")
    assert pd.isna(gpu["verified"])  # not run: nothing was checked, so neither True nor False
    # what was executed: the block-sparse fp32 kernel family on both; the compiled builds are linked in the run
    assert set(df["executed"]) == {"fp32"}
    links = {p.resolve() for p in (tmp_path / "run" / "artifacts").iterdir()}
    assert {Path(a).resolve() for a in df["artifact"]} == links and any((p / "kernels.cl").exists() for p in links)
    cell = pd.read_json(tmp_path / "run" / "cells" / f"{df[df['target'] == 'android-cpu'].iloc[0]['cell_id']}.json",
                        typ="series")
    assert cell["device_snapshot"]["before"]["temps_c"] == {"soc": 41.0}
    assert "Traceback" not in r.stderr


@pytest.fixture
def tracker():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                             "--port-end", str(port + 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # importing TVM takes a few seconds on this machine
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "the RPC tracker exited"
            time.sleep(0.3)
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def test_remote_path_through_a_local_rpc_tracker(tmp_path, phone, tracker):
    entry = _target_entry(phone, f"local:{phone['root']}", tracker=f'"{tracker}"', key='"jbtest"')
    f = write_campaign(tmp_path / "c.toml", BODY + entry, protocol=PROTOCOL)
    run_cli("run", f, "--out", tmp_path / "run", check=True)
    _check_remote_run(tmp_path, phone, pd.read_parquet(tmp_path / "run" / "measurements.parquet"))


def test_adb_shell_transport_at_the_protocol_boundary(tmp_path, phone, monkeypatch):
    """adb-shell's real TCP client against a device speaking the ADB protocol: first-connection key
    authorization, shell, push, pull, background spawn; then the whole campaign over it."""
    from targets.android.transport import AdbShellTransport

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    adbd = FakeAdbd(require_auth=True)
    try:
        t = AdbShellTransport("tcp", f"127.0.0.1:{adbd.port}", timeout_s=10)
        assert (tmp_path / "home/.android/adbkey").exists() and len(adbd.accepted_keys) == 1
        assert t.run("echo hello") == "hello\n"
        with pytest.raises(RuntimeError, match="failed \\(3\\)"):
            t.run("exit 3")
        payload = os.urandom(150_000)
        (tmp_path / "a.bin").write_bytes(payload)
        t.push(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
        t.pull(str(tmp_path / "b.bin"), str(tmp_path / "c.bin"))
        assert (tmp_path / "c.bin").read_bytes() == payload and os.access(tmp_path / "b.bin", os.X_OK)
        t.close()
        meters = f'meters = [{{name = "android-battery", root = "{phone["root"]}"}}]'
        entry = _target_entry(phone, f"tcp:127.0.0.1:{adbd.port}").rstrip() + "\n" + meters + "\n"
        f = write_campaign(tmp_path / "c.toml", BODY + entry, protocol=PROTOCOL)
        run_cli("run", f, "--out", tmp_path / "run", check=True)
        _check_remote_run(tmp_path, phone, pd.read_parquet(tmp_path / "run" / "measurements.parquet"))
        assert any("tvm_rpc server" in c for c in adbd.commands)  # the server was started over adb
    finally:
        adbd.close()


def test_disconnect_mid_cell_fails_that_cell_clearly(tmp_path, phone):
    from bench.protocol import ProtocolSpec, measure
    from bench.runner import compile_cached
    from targets.android.target import AndroidCPUTarget

    target = AndroidCPUTarget()
    opts = target.parse_options({"profile": "host", "tvm_rpc": str(phone["tvm_rpc"]),
                                 "workdir": str(phone["workdir"]), "rpc_port": phone["port"]})
    v = make_variant(ModelSpec(name="smallcnn-digits"), CompressionSpec())
    artifact, _ = compile_cached(target, v, opts)
    session = RemoteSession(f"local:{phone['root']}", opts, "cpu")
    try:
        session.shell.run(f"kill -KILL -$(cat {session.workdir}/server.pid)")  # the phone drops off
        with pytest.raises(TargetError, match="failed during the cell"):
            measure(session, artifact, ProtocolSpec(min_runs=3, min_duration_s=0, warmup_runs=1, warmup_s=0))
        assert not session.healthy()
    finally:
        session.close()
    assert _servers_left(phone["port"]) == 0


def test_missing_tvm_rpc_and_bad_device_are_one_line_errors(tmp_path, phone):
    with pytest.raises(TargetError, match="option tvm_rpc must name the tvm_rpc binary"):
        RemoteSession("local", DeviceOptions(), "cpu")
    with pytest.raises(TargetError, match="device 'fax:123' not understood"):
        RemoteSession("fax:123", DeviceOptions(tvm_rpc=str(phone["tvm_rpc"])), "cpu")


def test_snapshot_parsing_flags_charging():
    snap = parse_snapshot("prop.ro.product.model=Pixel 8\ngpu.kgsl_hz=585000000\ncpu.cpu0=1804800\n"
                          "temp.skin=36500\nbattery.status=Charging\nusb.online=1\n")
    assert snap.info["props"]["ro.product.model"] == "Pixel 8" and snap.gpu_hz["kgsl_hz"] == 585000000
    assert snap.cpu_hz["cpu0"] == 1804800e3 and snap.temps_c["skin"] == 36.5 and snap.charging


def test_several_phones_on_one_tracker_run_cells_in_parallel(tmp_path, tracker):
    phones = [device_tree(tmp_path / f"phone{i}", current_ua=-(400_000 + 200_000 * i)) for i in range(2)]
    rpc = tvm_rpc_standin(tmp_path / "tvm_rpc")
    devices = ", ".join(f'"local:{p}"' for p in phones)
    body = ('[[models]]\nname = "smallcnn-digits"\n[[compression]]\nname = "dense"\n[[compression]]\nscheme = "block"\n'
            'sparsity = 0.5\n[[compression]]\nscheme = "block"\nsparsity = 0.75\n[[compression]]\nscheme = "filter"\n'
            f'sparsity = 0.5\n[[targets]]\nname = "android-cpu"\ndevices = [{devices}]\nprofile = "host"\n'
            f'tvm_rpc = "{rpc}"\nworkdir = "/tmp/jb-phones-{os.getpid()}"\nrpc_port = {free_port()}\n'
            f'tracker = "{tracker}"\n')
    proto = PROTOCOL.replace("min_duration_s = 0.2", "min_duration_s = 1.0")
    f = write_campaign(tmp_path / "c.toml", body, protocol=proto)
    run_cli("run", f, "--out", tmp_path / "run", check=True)
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet")
    assert len(df) == 4 and (df["status"] == "ok").all() and df["verified"].all()
    used = {d.split(" ")[0] for d in df["device"]}
    assert used == {f"local:{p}" for p in phones}  # both phones took cells
    # each row's energy comes from the phone that ran it: 0.4 A or 0.6 A at 3.9 V
    for dev, watts in zip(df["device"], df["avg_power_w"], strict=True):
        assert watts == pytest.approx(1.56 if dev.startswith(f"local:{phones[0]}") else 2.34)
    cells = [pd.read_json(tmp_path / "run" / "cells" / f"{c}.json", typ="series") for c in df["cell_id"]]
    spans = [(c["windows"]["timed"][0]["t0"], c["windows"]["timed"][-1]["t1"], c["row"]["device"]) for c in cells]
    assert all(isinstance(t0, float) and t1 > t0 for t0, t1, _ in spans)
    overlap = any(a0 < b1 and b0 < a1 and da != db for a0, a1, da in spans for b0, b1, db in spans)
    assert overlap  # the two phones measured at the same time


@pytest.mark.skipif(not shutil.which("adb"), reason="no adb binary (.ci/run installs Debian's adb package)")
def test_adb_server_transport_through_a_real_adb_server(tmp_path, monkeypatch):
    """The `adb` client and server (Debian's platform-tools) against a device speaking the ADB protocol."""
    from targets.android.transport import AdbServerTransport

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))  # a private server, killed below
    adbd = FakeAdbd(require_auth=True)
    try:
        subprocess.run(["adb", "start-server"], capture_output=True, timeout=60, check=True)
        subprocess.run(["adb", "connect", f"127.0.0.1:{adbd.port}"], capture_output=True, timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline and "\tdevice" not in subprocess.run(
                ["adb", "devices"], capture_output=True, text=True, timeout=30).stdout:
            time.sleep(0.5)
        listed = run_cli("devices", check=True).stdout
        assert f"adb:127.0.0.1:{adbd.port}" in listed and "FakePhone" in listed  # discovery
        t = AdbServerTransport(f"127.0.0.1:{adbd.port}")
        assert t.run("echo hello") == "hello\n"
        payload = os.urandom(120_000)
        (tmp_path / "a.bin").write_bytes(payload)
        t.push(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"))
        t.pull(str(tmp_path / "b.bin"), str(tmp_path / "c.bin"))
        assert (tmp_path / "c.bin").read_bytes() == payload
        assert len(adbd.accepted_keys) == 1  # the server's own key, allowed on first connection
    finally:
        subprocess.run(["adb", "kill-server"], capture_output=True, timeout=60)
        adbd.close()
