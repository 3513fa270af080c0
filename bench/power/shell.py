"""The shell transport a device-side sampler runs over. adb transports (targets/android) implement the
same three calls; `LocalShell` runs on this machine, for a mounted device tree or the tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Protocol


class Shell(Protocol):
    def run(self, cmd: str, timeout: float = 30) -> str:
        """Run `cmd` with sh on the device; its stdout. Raises on a non-zero exit."""

    def spawn(self, cmd: str) -> None:
        """Start `cmd` in the background on the device and return at once."""

    def pull(self, remote: str, local: str) -> None:
        """Copy a device file to this machine."""


class LocalShell:
    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def run(self, cmd: str, timeout: float = 30) -> str:
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"'{cmd}' failed ({r.returncode}): {r.stderr.strip()[:200]}")
        return r.stdout

    def spawn(self, cmd: str) -> None:
        # its own process group, so that close() also stops what the command started
        self._procs.append(subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))

    def pull(self, remote: str, local: str) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                p.wait(5)
