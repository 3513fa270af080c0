"""How joulebench reaches a phone: run / spawn / push / pull / forward over one of three transports.

  local[:ROOT]        this machine standing in for the phone (sysfs read under ROOT): tests, dry runs
  tcp:HOST[:PORT]     adb-shell over TCP (adb over Wi-Fi), RSA key ~/.android/adbkey (created if missing)
  usb[:SERIAL]        adb-shell over USB (pip install 'adb-shell[usb]')
  adb[:SERIAL]        a running adb server, through the `adb` binary (supports port forwarding)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from bench.api import LocalShell, TargetError


class Transport:
    name = "transport"
    sysfs_root = "/"

    def run(self, cmd: str, timeout: float = 60) -> str:
        raise NotImplementedError

    def spawn(self, cmd: str) -> None:
        raise NotImplementedError

    def push(self, local: str, remote: str) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: str) -> None:
        raise NotImplementedError

    def forward(self, device_port: int) -> tuple[str, int]:
        """(host, port) on which this machine reaches `device_port` on the device."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalTransport(LocalShell, Transport):
    name = "local"

    def __init__(self, root: str = "/") -> None:
        super().__init__()
        self.sysfs_root = root

    def push(self, local: str, remote: str) -> None:
        shutil.copyfile(local, remote)
        shutil.copymode(local, remote)

    def forward(self, device_port: int) -> tuple[str, int]:
        return "127.0.0.1", device_port


_RC = "__jb_rc="


class _AdbShell(Transport):
    """run / spawn for both adb transports, over their raw `adb shell` call: the remote shell's exit
    status is echoed after the command (adb's shell v1 service does not return it)."""

    def _shell(self, cmd: str, timeout: float) -> str:
        raise NotImplementedError

    def run(self, cmd: str, timeout: float = 60) -> str:
        body, _, rc = self._shell(f"( {cmd} ); echo {_RC}$?", timeout).rpartition(_RC)
        if rc.strip() != "0":
            raise RuntimeError(f"'{cmd}' failed ({rc.strip()}): {body.strip()[-200:]}")
        return body

    def spawn(self, cmd: str) -> None:
        self._shell(f"setsid sh -c {shlex.quote(cmd)} > /dev/null 2>&1 < /dev/null &", 60)


class AdbShellTransport(_AdbShell):
    """adb-shell (pure-Python adb client) over TCP or USB."""

    def __init__(self, kind: str, address: str | None, key_path: str | None = None, timeout_s: float = 10.0) -> None:
        try:
            from adb_shell.adb_device import AdbDeviceTcp, AdbDeviceUsb
            from adb_shell.auth.keygen import keygen
            from adb_shell.auth.sign_pythonrsa import PythonRSASigner
        except ImportError:
            raise TargetError("adb-shell is not installed: pip install 'joulebench[android]'") from None
        key = Path(key_path or Path.home() / ".android" / "adbkey")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            keygen(str(key))  # first connection: the phone asks to allow this key
        signer = PythonRSASigner(Path(f"{key}.pub").read_text(), key.read_text())
        if kind == "tcp":
            host, _, port = (address or "").partition(":")
            if not host:
                raise TargetError("device 'tcp:' needs a host, e.g. tcp:192.168.1.20:5555")
            self.host = host
            self.device = AdbDeviceTcp(host, int(port or 5555), default_transport_timeout_s=timeout_s)
        else:
            try:
                self.device = AdbDeviceUsb(serial=address or None, default_transport_timeout_s=timeout_s)
            except Exception as exc:
                raise TargetError(f"no USB adb device ({exc}); install 'adb-shell[usb]' and check the cable") from None
            self.host = None
        self.name = f"{kind}:{address or ''}"
        try:
            self.device.connect(rsa_keys=[signer], auth_timeout_s=timeout_s)
        except Exception as exc:
            raise TargetError(f"cannot connect to {self.name}: {exc} (is USB debugging allowed for {key}.pub?)") from None

    def _shell(self, cmd: str, timeout: float) -> str:
        return self.device.shell(cmd, timeout_s=timeout)

    def push(self, local: str, remote: str) -> None:
        self.device.push(local, remote, st_mode=0o100755)

    def pull(self, remote: str, local: str) -> None:
        self.device.pull(remote, local)

    def forward(self, device_port: int) -> tuple[str, int]:
        if self.host is None:
            raise TargetError("adb-shell over USB cannot forward ports: use device = 'adb:SERIAL' (adb server) "
                              "or an RPC tracker the phone reaches over Wi-Fi")
        return self.host, device_port  # over Wi-Fi the phone is reachable directly

    def close(self) -> None:
        self.device.close()


class AdbServerTransport(_AdbShell):
    """The `adb` binary talking to a running adb server (USB or Wi-Fi devices it knows)."""

    def __init__(self, serial: str | None) -> None:
        self.adb = shutil.which("adb") or os.environ.get("ADB")
        if not self.adb:
            raise TargetError("no `adb` binary on PATH (install platform-tools or set ADB=/path/to/adb)")
        self.serial = serial
        self.name = f"adb:{serial or ''}"
        self._forwards: list[int] = []
        self._adb("get-state")

    def _adb(self, *args: str, timeout: float = 60) -> str:
        cmd = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise TargetError(f"adb {' '.join(args[:2])} failed: {(r.stderr or r.stdout).strip()[:200]}")
        return r.stdout

    def _shell(self, cmd: str, timeout: float) -> str:
        return self._adb("shell", cmd, timeout=timeout)

    def push(self, local: str, remote: str) -> None:
        self._adb("push", local, remote)

    def pull(self, remote: str, local: str) -> None:
        self._adb("pull", remote, local)

    def forward(self, device_port: int) -> tuple[str, int]:
        port = int(self._adb("forward", "tcp:0", f"tcp:{device_port}").strip())
        self._forwards.append(port)
        return "127.0.0.1", port

    def close(self) -> None:
        for port in self._forwards:
            subprocess.run([self.adb, "forward", "--remove", f"tcp:{port}"], capture_output=True)


def discover() -> list[dict]:
    """Devices a running adb server knows (USB and adb-over-Wi-Fi), as campaign `device` values."""
    adb = shutil.which("adb") or os.environ.get("ADB")
    if not adb:
        raise TargetError("no `adb` binary on PATH: install platform-tools (or connect by address: device = 'tcp:HOST')")
    r = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise TargetError(f"adb devices failed: {(r.stderr or r.stdout).strip()[:200]}")
    out = []
    for line in r.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            info = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            out.append({"device": f"adb:{parts[0]}", "state": parts[1], "model": info.get("model", "")})
    return out


def connect(device: str) -> Transport:
    kind, _, rest = device.partition(":")
    if kind == "local":
        return LocalTransport(rest or "/")
    if kind in ("tcp", "usb"):
        return AdbShellTransport(kind, rest or None)
    if kind == "adb":
        return AdbServerTransport(rest or None)
    raise TargetError(f"device '{device}' not understood: use local[:ROOT], tcp:HOST[:PORT], usb[:SERIAL] or adb[:SERIAL]")
