"""Meter plugin interface: start() before the idle window, stop() after the timed window -> PowerTrace.

Each meter declares its unit ('W' samples or 'J' counter), its update period and the clock its
timestamps come from; whatever that clock, the trace it returns is on the harness's monotonic clock.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from bench.power.trace import PowerTrace


class MeterError(RuntimeError):
    """A meter that cannot be used here: the message says what is missing and how to get it."""


class Meter(ABC):
    name: ClassVar[str]
    unit: ClassVar[str]  # "W" (power samples) or "J" (cumulative energy counter)
    clock: ClassVar[str]  # where timestamps come from: host-monotonic | device | external
    period_s: float = 0.05  # update period: the harness lengthens windows to get enough samples

    @classmethod
    def availability(cls, **options) -> tuple[bool, str]:
        try:
            cls(**options).check()
        except MeterError as exc:
            return False, str(exc)
        except TypeError as exc:
            return False, f"bad options for meter {cls.name}: {exc}"
        return True, ""

    def check(self) -> None:  # noqa: B027 - raise MeterError when unusable
        """Raise MeterError if the meter cannot be read here."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> PowerTrace: ...

    def mark(self, label: str) -> None:  # noqa: B027 - only meters on another clock need the harness's events
        """The harness reached event `label` (idle_start, timed_start, ...) now, on its monotonic clock."""

    @property
    def provenance(self) -> str:
        return f"measured:{self.name}"


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
