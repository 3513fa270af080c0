"""Power meters at their real input formats, and energy per inference checked against independent sums."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import types

import numpy as np
import pandas as pd
import pytest

from bench import power
from bench.api import DeviceSnapshot, LocalShell, MeterError
from bench.power.android import AndroidBatteryMeter, calibrate, parse_sampler_output, to_watts
from bench.power.files import ExternalCsvMeter, PynqRailsMeter
from bench.power.sysfs import HwmonMeter, RaplMeter
from bench.power.trace import PowerTrace, Window, energy_per_inference, unwrap_counter
from bench.protocol import ProtocolSpec, throttled
from tests.power_fixtures import CounterWriter, rapl_tree

# ---- integration maths, exact -------------------------------------------------------------------


def test_sample_and_hold_and_trapezoid_on_known_samples():
    tr = PowerTrace("m", [0.0, 1.0, 2.0, 3.0], watts=[1.0, 3.0, 5.0, 5.0])
    # hold: [0.5,1) at 1 W, [1,2) at 3 W, [2,2.5] at 5 W
    assert tr.energy(0.5, 2.5) == pytest.approx(0.5 * 1 + 3 + 0.5 * 5)
    tz = PowerTrace("m", [0.0, 1.0, 2.0, 3.0], watts=[1.0, 3.0, 5.0, 5.0], method="trapezoid")
    # linear: 0.5..1 avg 2.5, 1..2 avg 4, 2..2.5 = 5
    assert tz.energy(0.5, 2.5) == pytest.approx(0.5 * 2.5 + 4 + 0.5 * 5)
    with pytest.raises(ValueError, match="does not cover"):
        tr.energy(-1.0, 1.0)


def test_counter_wrap_and_interpolation():
    raw = np.array([900, 990, 30, 120, 210])  # wraps at 1000 between the 2nd and 3rd reading
    assert unwrap_counter(raw, 1000).tolist() == [900, 990, 1030, 1120, 1210]
    tr = PowerTrace("rapl", [0, 1, 2, 3, 4], joules=unwrap_counter(raw, 1000) * 1e-6)
    assert tr.energy(0.5, 3.5) == pytest.approx((1165 - 945) * 1e-6)  # interpolated at both ends


def test_energy_per_inference_subtracts_idle():
    t = np.arange(0, 10.001, 0.01)
    w = np.where((t >= 4) & (t < 8), 5.0, 2.0)  # 2 W idle, 5 W while inferring in [4, 8)
    tr = PowerTrace("m", t, watts=w)
    e = energy_per_inference(tr, Window(1, 3), [Window(4, 6, 100), Window(6, 8, 100)])
    assert e.idle_power_w == pytest.approx(2.0)
    assert e.energy_mj_per_inf == pytest.approx(3.0 * 2 / 100 * 1e3, rel=1e-6)  # 60 mJ dynamic
    assert e.energy_total_mj_per_inf == pytest.approx(5.0 * 2 / 100 * 1e3, rel=1e-6)
    assert e.inf_per_j == pytest.approx(200 / 20.0)
    assert e.gops_per_w(1_000_000) == pytest.approx(2e-3 * 10)
    assert e.energy_mj_per_inf_ci == pytest.approx(0.0, abs=1e-9)  # identical repeats


# ---- meters at their boundaries ---------------------------------------------------------------------


def test_rapl_counters_with_wrap_give_the_scheduled_power(tmp_path):
    zones = rapl_tree(tmp_path, max_range_uj=300_000)  # 0.3 J range: wraps every 0.1 s at 3 W
    meter = RaplMeter(root=str(tmp_path), period_s=0.01)
    assert [z.name for z in meter.zones()] == ["intel-rapl:0", "intel-rapl:1"]  # sub-zones excluded
    with CounterWriter(zones, watts_per_zone=3.0, max_range_uj=300_000):
        time.sleep(0.05)
        meter.start()
        time.sleep(0.6)
        tr = meter.stop()
    assert tr.method == "counter" and len(tr.t) > 30
    p = tr.mean_power(tr.t[1], tr.t[-2])
    assert p == pytest.approx(6.0, rel=0.05)  # two zones x 3 W, through ~6 wraps each


def test_rapl_absent_says_why(tmp_path):
    ok, why = RaplMeter.availability(root=str(tmp_path))
    assert not ok and "no RAPL zones under" in why


def test_hwmon_ina3221_label_and_ina260_power(tmp_path):
    ina3221 = tmp_path / "sys/class/hwmon/hwmon0"
    ina3221.mkdir(parents=True)
    (ina3221 / "name").write_text("ina3221\n")
    for n, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 300)], start=1):
        (ina3221 / f"in{n}_label").write_text(label + "\n")
        (ina3221 / f"in{n}_input").write_text(f"{mv}\n")
        (ina3221 / f"curr{n}_input").write_text(f"{ma}\n")
    ina260 = tmp_path / "sys/class/hwmon/hwmon1"
    ina260.mkdir(parents=True)
    (ina260 / "name").write_text("ina260\n")
    (ina260 / "power1_input").write_text("4250000\n")  # µW
    m = HwmonMeter(root=str(tmp_path), device="ina3221", label="VDD_IN", period_s=0.01)
    m.start()
    time.sleep(0.1)
    tr = m.stop()
    assert np.allclose(tr.watts, 6.0)  # 5 V x 1.2 A
    m2 = HwmonMeter(root=str(tmp_path), device="ina260")
    m2.check()
    assert m2.read() == pytest.approx(4.25)
    ok, why = HwmonMeter.availability(root=str(tmp_path), device="ina999")
    assert not ok and "no hwmon device named 'ina999' (found: ina3221, ina260)" in why


def test_nvml_through_a_shim_at_the_library_boundary(monkeypatch):
    t0 = time.monotonic()

    class NVMLError(Exception):
        pass

    shim = types.SimpleNamespace(
        NVMLError=NVMLError, nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: int((time.monotonic() - t0) * 250_000),  # mJ at 250 W
        nvmlDeviceGetPowerUsage=lambda h: 250_000)  # mW
    monkeypatch.setitem(sys.modules, "pynvml", shim)
    meter = power.make({"name": "nvml", "period_s": 0.01})
    meter.start()
    time.sleep(0.3)
    tr = meter.stop()
    assert meter.unit == "J" and tr.mean_power(tr.t[0], tr.t[-1]) == pytest.approx(250, rel=0.05)

    def no_counter(h):
        raise NVMLError("Not Supported")

    monkeypatch.setattr(shim, "nvmlDeviceGetTotalEnergyConsumption", no_counter)
    m2 = power.make("nvml")
    m2.check()
    assert m2.unit == "W" and m2.read() == 250.0


# A capture from a phone's sampler loop: Pixel-style, µA, negative while discharging.
RECORDED = """\
1732190000000000000 -412000 4012000 Discharging
1732190000050000000 -398000 4011000 Discharging
1732190000100000000 -1203000 3990000 Discharging
1732190000150000000 -1187000 3991000 Discharging
17321900002000000
"""


def test_android_recorded_sampler_output_units_and_sign():
    s = parse_sampler_output(RECORDED)
    assert len(s) == 4  # the line cut by the stop is dropped
    cal = calibrate(s)
    assert cal == {"unit": "uA", "sign": -1}
    w = to_watts(s, **cal)
    assert w == pytest.approx([0.412 * 4.012, 0.398 * 4.011, 1.203 * 3.990, 1.187 * 3.991])
    mA = [type(x)(x.t_ns, x.current / 1000, x.voltage_uv, x.status) for x in s]  # a mA, same-sign device
    assert calibrate(mA)["unit"] == "mA" and to_watts(mA, "mA", -1) == pytest.approx(w)
    charging = [type(x)(x.t_ns, -x.current, x.voltage_uv, "Charging") for x in s]
    with pytest.raises(MeterError, match="charging"):
        calibrate(charging)


def test_android_sampler_runs_on_a_device_tree_over_a_shell(tmp_path):
    bat = tmp_path / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    (bat / "current_now").write_text("-500000\n")  # 0.5 A discharging, µA
    (bat / "voltage_now").write_text("4000000\n")
    (bat / "status").write_text("Discharging\n")
    shell = LocalShell()
    try:
        m = AndroidBatteryMeter(shell, root=str(tmp_path), period_s=0.02, workdir=str(tmp_path))
        m.start()
        time.sleep(0.4)
        t_host_mid = time.monotonic() - 0.2
        tr = m.stop()
    finally:
        shell.close()
    assert len(tr.t) >= 5 and np.allclose(tr.watts, 2.0)
    assert abs(np.median(tr.t) - t_host_mid) < 0.15  # device clock mapped onto the harness clock
    assert not list(tmp_path.glob("jb-power-*"))  # cleaned up on the device


class _LoadedDevice(LocalShell):
    """A busy phone: the background sampler starts late and stalls just as the timed window ends."""

    def spawn(self, cmd: str) -> None:
        super().spawn(f"sleep 0.5; {cmd}")

    def stall(self, seconds: float) -> threading.Timer:
        pgid = self._procs[-1].pid
        os.killpg(pgid, signal.SIGSTOP)
        resume = threading.Timer(seconds, os.killpg, (pgid, signal.SIGCONT))
        resume.start()
        return resume


def test_android_trace_covers_the_window_on_a_loaded_device(tmp_path):
    bat = tmp_path / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    for name, value in {"current_now": "-500000", "voltage_now": "4000000", "status": "Discharging"}.items():
        (bat / name).write_text(value + "\n")
    shell = _LoadedDevice()
    try:
        m = AndroidBatteryMeter(shell, root=str(tmp_path), period_s=0.02, workdir=str(tmp_path))
        m.start()  # returns only once the late sampler has its first reading
        t_open = time.monotonic()
        time.sleep(0.2)
        t_end = time.monotonic()
        shell.stall(0.6)  # no reading for 30 periods after the window's end
        tr = m.stop()
    finally:
        shell.close()
    assert tr.t[0] <= t_open and tr.t[-1] >= t_end
    assert tr.energy(t_open, t_end) == pytest.approx(2.0 * (t_end - t_open))


def test_android_sampler_that_never_resumes_leaves_the_window_uncovered_not_the_cell_failed(tmp_path):
    bat = tmp_path / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    for name, value in {"current_now": "-500000", "voltage_now": "4000000", "status": "Discharging"}.items():
        (bat / name).write_text(value + "\n")
    shell, resume = _LoadedDevice(), None
    try:
        m = AndroidBatteryMeter(shell, root=str(tmp_path), period_s=0.02, workdir=str(tmp_path))
        m.start()
        t_open = time.monotonic()
        time.sleep(0.1)
        resume = shell.stall(60.0)  # hung for the rest of the test
        time.sleep(0.1)
        t_end = time.monotonic()
        tr = m.stop()  # gives up waiting after max(5 s, 50 periods) and returns what it has
    finally:
        if resume is not None:
            resume.cancel()
            os.killpg(shell._procs[-1].pid, signal.SIGCONT)  # so that close() can stop it
        shell.close()
    assert t_open < tr.t[-1] < t_end
    with pytest.raises(ValueError, match="does not cover window"):  # the protocol's "energy unavailable"
        energy_per_inference(tr, Window(t_open - 0.01, t_open), [Window(t_open, t_end, 10)])


def test_external_csv_aligned_by_markers(tmp_path):
    offset = 1000.0  # the bench meter's clock runs 1000 s ahead of ours
    t_meter = np.arange(0, 6.0001, 0.01) + offset
    watts = np.where(t_meter - offset >= 3, 8.0, 2.0)
    marker = [""] * len(t_meter)
    marker[100], marker[300], marker[500] = "idle_start", "timed_start", "timed_end"
    pd.DataFrame({"time_s": t_meter, "watts": watts, "marker": marker}).to_csv(tmp_path / "log.csv", index=False)
    m = ExternalCsvMeter(str(tmp_path / "log.csv"))
    m.start()
    m.marks = [("idle_start", 1.0), ("timed_start", 3.0), ("timed_end", 5.0)]  # harness times of the events
    tr = m.stop()
    e = energy_per_inference(tr, Window(1.0, 2.9), [Window(3.0, 5.0, 400)])
    assert e.idle_power_w == pytest.approx(2.0) and e.energy_mj_per_inf == pytest.approx(6.0 * 2 / 400 * 1e3)
    vi = pd.DataFrame({"time_s": t_meter, "volts": 5.0, "amps": watts / 5.0})
    vi.to_csv(tmp_path / "vi.csv", index=False)
    tr2 = ExternalCsvMeter(str(tmp_path / "vi.csv"), clock_offset_s=offset).stop()
    assert tr2.energy(3.0, 5.0) == pytest.approx(16.0)
    with pytest.raises(MeterError, match="no marker event shared"):
        ExternalCsvMeter(str(tmp_path / "vi.csv")).stop()


def test_pynq_datarecorder_frame(tmp_path):
    # what recorder.frame.to_csv() writes on the board: datetime index, Mark, <rail>_power columns (W)
    idx = pd.to_datetime(np.arange(0, 4.0001, 0.05) + 1_700_000_000, unit="s")
    mark = np.searchsorted([1.0, 2.0, 3.5], np.arange(0, 4.0001, 0.05), side="right")
    df = pd.DataFrame({"Mark": mark, "12V_power": np.where(mark >= 2, 4.5, 3.0), "VCCINT_power": 0.8}, index=idx)
    df.to_csv(tmp_path / "rails.csv")
    m = PynqRailsMeter(str(tmp_path / "rails.csv"))
    m.start()
    m.marks = [("idle_start", 10.0), ("timed_start", 11.0), ("timed_end", 12.5)]
    tr = m.stop()
    assert tr.mean_power(10.0, 10.95) == pytest.approx(3.0)  # 12V input rail only, not the sum
    assert tr.mean_power(11.0, 12.45) == pytest.approx(4.5)
    both = PynqRailsMeter(str(tmp_path / "rails.csv"), rails=["12V", "VCCINT"], clock_offset_s=1_700_000_000 - 10.0)
    assert both.stop().mean_power(10.0, 10.9) == pytest.approx(3.8)


def test_throttle_flag():
    spec = ProtocolSpec()
    assert not throttled(DeviceSnapshot(cpu_hz={"cpu0": 3.0e9}), DeviceSnapshot(cpu_hz={"cpu0": 2.9e9}), spec)
    assert throttled(DeviceSnapshot(cpu_hz={"cpu0": 3.0e9}), DeviceSnapshot(cpu_hz={"cpu0": 2.0e9}), spec)
    assert throttled(DeviceSnapshot(fabric_hz={"pl0": 250e6}), DeviceSnapshot(fabric_hz={"pl0": 100e6}), spec)
    assert not throttled(DeviceSnapshot(fabric_hz={"pl0": 250e6}), DeviceSnapshot(fabric_hz={"pl0": 250e6}), spec)
    assert throttled(DeviceSnapshot(temps_c={"soc": 60.0}), DeviceSnapshot(temps_c={"soc": 91.0}), spec)


def test_registry_lists_every_meter():
    assert set(power.registered()) >= {"rapl", "hwmon", "nvml", "android-battery", "pynq-rails", "external-csv"}
    with pytest.raises(MeterError, match="unknown meter 'geiger'"):
        power.make("geiger")


# ---- the protocol and the CLI with meters -------------------------------------------------------------


def test_protocol_energy_matches_constant_power(tmp_path):
    """A real model timed while a RAPL tree draws a constant 4 W: the dynamic energy must come out ~0
    and the total energy per inference 4 W x the measured latency (clock alignment + idle subtraction)."""
    import torch

    from bench.protocol import run_protocol
    from pruning import zoo
    from targets.baselines.torch_eager import TorchExecutor

    model = zoo.build("smallcnn-digits")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    zones = rapl_tree(tmp_path, max_range_uj=10**9, zones=1)
    spec = ProtocolSpec(warmup_runs=2, warmup_s=0, min_runs=5, min_duration_s=0.0, repeats=3, idle_s=0.3,
                        min_power_samples=15)
    meter = RaplMeter(root=str(tmp_path), period_s=0.01)
    with CounterWriter(zones, watts_per_zone=4.0, max_range_uj=10**9):
        m = run_protocol(TorchExecutor(model), x, ref, "fp32", spec, [meter])
    assert m.status == "ok" and len(m.energy) == 1
    e = m.energy[0]
    lat = np.mean([w.seconds / w.inferences for w in m.windows])
    assert all(w.seconds >= 0.15 for w in m.windows)  # lengthened to get >= 15 samples at 10 ms
    assert e.power_samples >= 3 * 14
    assert e.idle_power_w == pytest.approx(4.0, rel=0.05) and e.avg_power_w == pytest.approx(4.0, rel=0.05)
    assert e.energy_total_mj_per_inf == pytest.approx(4.0 * lat * 1e3, rel=0.05)
    assert abs(e.energy_mj_per_inf) < 0.05 * e.energy_total_mj_per_inf
    assert m.provenance == "measured:perf_counter, measured:rapl"


def test_campaign_energy_unavailable_here_and_measured_with_a_meter(tmp_path):
    from tests.conftest import run_cli, write_campaign

    zones = rapl_tree(tmp_path / "board", max_range_uj=2**32)
    body = f"""
[[models]]
name = "smallcnn-digits"
[[targets]]
name = "torch-eager"
[[targets]]
name = "onnxruntime"
meters = [{{name = "rapl", root = "{tmp_path / 'board'}", period_s = 0.01}}]
"""
    proto = "\n[protocol]\nwarmup_runs = 1\nwarmup_s = 0\nmin_runs = 5\nmin_duration_s = 0\nrepeats = 2\nidle_s = 0.3\n"
    f = write_campaign(tmp_path / "c.toml", body, protocol=proto)
    with CounterWriter(zones, watts_per_zone=5.0, max_range_uj=2**32):
        run_cli("run", f, "--out", tmp_path / "run", check=True)
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet").set_index("target")
    host = df.loc["torch-eager"]
    # this machine exposes no RAPL: latency is measured, energy is not invented
    assert host["status"] == "ok" and pd.isna(host["energy_mj_per_inf"]) and pd.isna(host["avg_power_w"])
    assert host["energy_note"].startswith("energy unavailable: no RAPL zones under")
    assert host["provenance"] == "measured:perf_counter"
    ort = df.loc["onnxruntime"]
    assert ort["meter"] == "rapl" and ort["provenance"] == "measured:perf_counter, measured:rapl"
    assert ort["avg_power_w"] == pytest.approx(10.0, rel=0.05) and ort["idle_power_w"] == pytest.approx(10.0, rel=0.05)
    assert ort["energy_total_mj_per_inf"] > 0 and ort["inf_per_j"] > 0 and ort["gops_per_w"] > 0
    assert ort["power_samples"] >= 20 and not ort["throttled"]
    traces = pd.read_parquet(tmp_path / "run" / "traces" / f"{ort['cell_id']}.parquet")
    assert set(traces["meter"]) == {"rapl"} and traces["joules"].is_monotonic_increasing
    report = run_cli("report", tmp_path / "run", check=True).stdout
    assert "energy unavailable: no RAPL zones" in report and "mJ/inf" in report
    assert (tmp_path / "run" / "plots" / "efficiency.png").exists()


def test_explicit_meter_that_cannot_work_fails_the_cell(tmp_path):
    from tests.conftest import run_cli, write_campaign

    body = f'[[models]]\nname = "smallcnn-digits"\n[[targets]]\nname = "torch-eager"\nmeters = [{{name = "hwmon", root = "{tmp_path}"}}]\n'
    f = write_campaign(tmp_path / "c.toml", body)
    r = run_cli("run", f, "--out", tmp_path / "run")
    assert r.returncode == 1
    df = pd.read_parquet(tmp_path / "run" / "measurements.parquet")
    assert df.iloc[0]["status"] == "failed" and "no hwmon devices under" in df.iloc[0]["message"]


def test_meters_command_lists_availability():
    from tests.conftest import run_cli

    out = run_cli("meters", check=True).stdout
    assert "rapl" in out and "no RAPL zones under" in out and "android-battery" in out


def test_calibrate_power_command_on_a_device_tree(tmp_path):
    from tests.conftest import run_cli
    from tests.phone import device_tree

    root = device_tree(tmp_path / "phone", current_ua=-350_000, voltage_uv=3_950_000)
    r = run_cli("calibrate-power", "--device", f"local:{root}", "--seconds", "0.5", check=True)
    assert 'unit = "uA", sign = -1' in r.stdout
    assert float(r.stdout.split("idle draw ")[1].split(" W")[0]) == pytest.approx(0.35 * 3.95, abs=1e-3)
    (root / "sys/class/power_supply/battery/status").write_text("Charging\n")
    r = run_cli("calibrate-power", "--device", f"local:{root}", "--seconds", "0.3")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: the device is charging: unplug USB power (or use adb over Wi-Fi) and calibrate again")
