"""A phone as a Session: push tvm_rpc + runtime libraries, start the RPC server, connect (through a
forwarded port, the phone's address, or a TVM RPC tracker), upload and load each artifact, run the
runner's measurement protocol over RPC, and clean up (stop the server, delete files) even on error.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bench.api import Artifact, DeviceSnapshot, Executor, MeterContext, NotRunnable, Session, TargetError
from targets.android.transport import Transport, connect

SNAPSHOT = r"""
for p in ro.product.model ro.soc.manufacturer ro.soc.model ro.board.platform ro.build.version.release; do
  echo "prop.$p=$(getprop $p 2>/dev/null)"; done
R={root}
echo "gpu.kgsl_hz=$(cat $R/sys/class/kgsl/kgsl-3d0/gpuclk 2>/dev/null)"
for d in $R/sys/class/devfreq/*; do case "$d" in *mali*|*gpu*) echo "gpu.devfreq_hz=$(cat $d/cur_freq 2>/dev/null)";; esac; done
for c in $R/sys/devices/system/cpu/cpu[0-9]*; do echo "cpu.$(basename $c)=$(cat $c/cpufreq/scaling_cur_freq 2>/dev/null)"; done
echo "governor=$(cat $R/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)"
for z in $R/sys/class/thermal/thermal_zone*; do echo "temp.$(cat $z/type 2>/dev/null)=$(cat $z/temp 2>/dev/null)"; done
echo "battery.status=$(cat $R/sys/class/power_supply/battery/status 2>/dev/null)"
echo "usb.online=$(cat $R/sys/class/power_supply/usb/online 2>/dev/null)"
"""


class DeviceOptions(BaseModel):
    """Target options shared by android-gpu and android-cpu (a campaign's target entry keys)."""

    model_config = ConfigDict(extra="forbid")

    tvm_rpc: str | None = Field(None, description="tvm_rpc built for the phone (see README: Run on your phone)")
    runtime_libs: list[str] = Field(default_factory=list, description="libraries tvm_rpc needs (libc++_shared.so...)")
    workdir: str = "/data/local/tmp/joulebench"
    rpc_port: int = 9090
    tracker: str | None = Field(None, description="host:port of a TVM RPC tracker the phone registers with")
    key: str = "android"
    connect_timeout_s: float = 30.0


def parse_snapshot(text: str) -> DeviceSnapshot:
    snap, props, other = DeviceSnapshot(), {}, {}
    for line in text.splitlines():
        k, _, v = line.partition("=")
        v = v.strip()
        if not v:
            continue
        if k.startswith("prop."):
            props[k[5:]] = v
        elif k.startswith("cpu.") and v.isdigit():
            snap.cpu_hz[k[4:]] = int(v) * 1e3  # cpufreq reports kHz
        elif k.startswith("gpu.") and v.isdigit():
            snap.gpu_hz[k[4:]] = float(v)
        elif k.startswith("temp.") and v.lstrip("-").isdigit():
            t = int(v)
            snap.temps_c[k[5:]] = t / 1000 if abs(t) > 1000 else float(t)  # m°C on most kernels
        else:
            other[k] = v
    if "battery.status" in other or "usb.online" in other:
        snap.charging = other.get("battery.status", "").lower() == "charging" or other.get("usb.online") == "1"
    snap.info = {"props": props, **other}
    return snap


class RemoteSession(Session):
    def __init__(self, device: str, opts: DeviceOptions, device_kind: str) -> None:
        if not opts.tvm_rpc or not Path(opts.tvm_rpc).is_file():
            raise TargetError(f"option tvm_rpc must name the tvm_rpc binary built for the phone (got {opts.tvm_rpc!r}); "
                              "see README: Run on your phone")
        self.opts, self.device_kind = opts, device_kind
        self.shell: Transport = connect(device)
        self.sysfs_root = self.shell.sysfs_root
        tag = uuid.uuid4().hex[:8]
        self.workdir = f"{opts.workdir.rstrip('/')}/{tag}"
        # through a shared tracker each phone must be reachable as itself (its power is sampled here)
        self.rpc_key = f"{opts.key}-{tag}"
        self.device = device
        self.remote = None
        self.failed = False  # a remote call failed: the device is reopened for the next cell
        try:
            self._start_server()
            self.remote = self._connect()
            model = self.snapshot().info.get("props", {}).get("ro.product.model", "unknown model")
            self.device = f"{device} ({model})"
        except BaseException:
            self.close()
            raise

    # -- server lifecycle -------------------------------------------------------------------------------
    def _start_server(self) -> None:
        sh, wd, o = self.shell, self.workdir, self.opts
        sh.run(f"mkdir -p {wd}")
        for f in [o.tvm_rpc, *o.runtime_libs]:
            sh.push(f, f"{wd}/{Path(f).name}")
        sh.run(f"chmod 755 {wd}/{Path(o.tvm_rpc).name}")
        tracker = f" --tracker={o.tracker} --key={self.rpc_key}" if o.tracker else ""
        sh.spawn(f"cd {wd} && echo $$ > {wd}/server.pid && LD_LIBRARY_PATH={wd} exec ./{Path(o.tvm_rpc).name} server "
                 f"--host=0.0.0.0 --port={o.rpc_port} --port-end={o.rpc_port + 10}{tracker}")

    def _connect(self):
        from tvm import rpc

        deadline = time.monotonic() + self.opts.connect_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.opts.tracker:
                    host, _, port = self.opts.tracker.partition(":")
                    return rpc.connect_tracker(host, int(port)).request(self.rpc_key, session_timeout=0)
                host, port = self.shell.forward(self.opts.rpc_port)
                return rpc.connect(host, port, session_timeout=0)
            except Exception as exc:  # the server is still starting
                last = exc
                time.sleep(0.5)
        raise TargetError(f"no TVM RPC server reachable on {self.device} after {self.opts.connect_timeout_s:.0f}s: {last}")

    def close(self) -> None:
        self.remote = None
        try:
            self.shell.run(f"kill -TERM -$(cat {self.workdir}/server.pid) 2>/dev/null || "
                           f"kill -TERM $(cat {self.workdir}/server.pid) 2>/dev/null; rm -rf {self.workdir}")
        except Exception:  # the device may be gone: nothing more to clean from here
            pass
        self.shell.close()

    # -- measurement --------------------------------------------------------------------------------------
    def snapshot(self) -> DeviceSnapshot:
        try:
            return parse_snapshot(self.shell.run(SNAPSHOT.format(root=self.sysfs_root.rstrip("/"))))
        except Exception as exc:
            return DeviceSnapshot(error=str(exc)[:200])

    def meter_context(self) -> MeterContext:
        return MeterContext(shell=self.shell, root=self.sysfs_root, workdir=self.workdir)

    def healthy(self) -> bool:
        """The device answers its shell, its RPC server process is alive (a killed one lingers as a zombie,
        which `kill -0` still finds: read its state), and the RPC session answers a query."""
        if self.remote is None or self.failed:
            return False
        try:
            self.shell.run(f"p=$(cat {self.workdir}/server.pid) && test -e /proc/$p/status && "
                           "! grep -q '^State:[[:space:]]*Z' /proc/$p/status", timeout=10)
            return bool(self.remote.cpu(0).exist)
        except Exception:
            return False

    def load(self, artifact: Artifact):
        from targets.tvm.vm import VMExecutor

        lib = artifact.file("model.so")
        if not lib.exists():
            raise NotRunnable("compiled, not run: the artifact has no loadable library (no NDK at compile time: "
                              "set TVM_NDK_CC or ANDROID_NDK_HOME)")
        name = f"{artifact.manifest.get('key', 'model')}.so"
        with self._watch():
            self.remote.upload(str(lib), name)
            rmod = self.remote.load_module(name)
            dev = self.remote.cl(0) if self.device_kind == "opencl" else self.remote.cpu(0)
            return _Watched(VMExecutor(rmod, dev), self)

    @contextmanager
    def _watch(self):
        """Any failure of a remote call marks the session failed: the runner then reopens the device."""
        try:
            yield
        except Exception:
            self.failed = True
            raise


class _Watched(Executor):
    """The remote VM executor, watched by its session."""

    timer = "tvm.time_evaluator"

    def __init__(self, inner, session: RemoteSession) -> None:
        self.inner, self.session = inner, session
        self.extra_runs_per_call = inner.extra_runs_per_call

    def infer(self, x):
        with self.session._watch():
            return self.inner.infer(x)

    def time_runs(self, n: int) -> list[float]:
        with self.session._watch():
            return self.inner.time_runs(n)


def ndk_compiler() -> str | None:
    """The NDK C++ compiler tvm.support.ndk uses: TVM_NDK_CC, or derived from ANDROID_NDK_HOME."""
    if os.environ.get("TVM_NDK_CC"):
        return os.environ["TVM_NDK_CC"]
    home = os.environ.get("ANDROID_NDK_HOME")
    if home:
        cands = sorted(Path(home).glob("toolchains/llvm/prebuilt/*/bin/aarch64-linux-android*-clang++"))
        if cands:
            return str(cands[-1])
    return None
