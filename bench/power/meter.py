"""PolledMeter: the base of meters read on the host by a background thread. The Meter interface itself
(start/stop/mark -> PowerTrace) is declared in bench.api."""

from __future__ import annotations

import threading
import time
from abc import abstractmethod

import numpy as np

from bench.api import Meter, MeterError, PowerTrace

__all__ = ["Meter", "MeterError", "PolledMeter"]


class PolledMeter(Meter):
    """A meter read on the host by a background thread every `period_s` (sysfs counters, NVML)."""

    clock = "host-monotonic"

    def __init__(self, period_s: float = 0.02) -> None:
        self.period_s = period_s
        self._t: list[float] = []
        self._v: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def read(self):
        """Current power (W), or raw counter value(s) that `to_trace` turns into joules."""

    def start(self) -> None:
        self.check()
        self._t, self._v = [], []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name=f"meter-{self.name}", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        v = self.read()
        self._t.append(time.monotonic())
        self._v.append(v)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return self.to_trace(np.array(self._t), np.array(self._v))

    def to_trace(self, t: np.ndarray, v: np.ndarray) -> PowerTrace:
        return PowerTrace(self.name, t, watts=v) if self.unit == "W" else PowerTrace(self.name, t, joules=v)
