"""`LocalShell`: the `bench.api.Shell` a device-side sampler runs over, on this machine (a mounted device
tree, or the tests). adb transports (targets/android) implement the same calls."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from bench.api import Shell

__all__ = ["LocalShell", "Shell"]


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
