"""Meters whose samples come back as a file: PYNQ rails recorded on the board, and an external bench
meter's CSV log (Monsoon, Joulescope, PTDaemon-style setups).

Neither clock is the harness's, so traces are aligned by marker events: the harness notes the
monotonic time of each `mark(label)`, the log holds the same events on its own clock, and the
mean offset between the two maps the log onto the harness clock.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.api import Meter, MeterError
from bench.power.trace import PowerTrace


class _MarkedFileMeter(Meter):
    unit = "W"
    clock = "external"

    @classmethod
    def availability(cls, **options) -> tuple[bool, str]:
        if "path" not in options:
            return True, "configure: path = the CSV log it reads after the run"
        return super().availability(**options)

    def __init__(self, path: str, period_s: float = 0.02, clock_offset_s: float | None = None) -> None:
        self.path, self.period_s, self.clock_offset_s = Path(path), period_s, clock_offset_s
        self.marks: list[tuple[str, float]] = []

    def mark(self, label: str) -> None:
        self.marks.append((label, time.monotonic()))

    def start(self) -> None:
        self.marks = []

    def _align(self, meter_marks: list[tuple[str, float]], t: np.ndarray) -> np.ndarray:
        if self.clock_offset_s is not None:
            return t - self.clock_offset_s
        host = dict(self.marks)
        pairs = [(host[label], tm) for label, tm in meter_marks if label in host]
        if not pairs:
            raise MeterError(f"{self.path}: no marker event shared with the harness "
                             f"(harness marks: {', '.join(lbl for lbl, _ in self.marks) or 'none'}); "
                             "give clock_offset_s or log the markers")
        offset = float(np.mean([tm - th for th, tm in pairs]))  # meter clock - harness clock
        return t - offset

    def _wait_for_file(self) -> None:
        if not self.path.exists():
            raise MeterError(f"power log {self.path} not found: the meter's log must be written (or pulled) there")


class ExternalCsvMeter(_MarkedFileMeter):
    """CSV with `time_s` (meter clock, s), `watts` or `volts` + `amps`, and an optional `marker` column
    holding the harness's marker labels on the rows where the meter logged them."""

    name = "external-csv"

    def stop(self) -> PowerTrace:
        self._wait_for_file()
        df = pd.read_csv(self.path)
        if "time_s" not in df:
            raise MeterError(f"{self.path}: needs a time_s column")
        if "watts" in df:
            w = df["watts"].to_numpy(float)
        elif {"volts", "amps"} <= set(df.columns):
            w = df["volts"].to_numpy(float) * df["amps"].to_numpy(float)
        else:
            raise MeterError(f"{self.path}: needs a watts column, or volts and amps")
        marks = []
        if "marker" in df:
            m = df[df["marker"].notna() & (df["marker"].astype(str) != "")]
            marks = list(zip(m["marker"].astype(str), m["time_s"].astype(float), strict=True))
        t = self._align(marks, df["time_s"].to_numpy(float))
        return PowerTrace(self.name, t, watts=w)


class PynqRailsMeter(_MarkedFileMeter):
    """What `pynq.DataRecorder(...).frame.to_csv()` writes on the board: a timestamp index, a `Mark`
    column that increments at each `recorder.mark()`, and one `<rail>_power` column (W) per sensor.
    The n-th increment of Mark is the board's copy of the harness's n-th mark. pynq itself is never
    imported here: it pins numpy<2 and belongs on the board only."""

    name = "pynq-rails"

    def __init__(self, path: str, rails: list[str] | None = None, **kw) -> None:
        super().__init__(path, **kw)
        self.rails = rails

    def stop(self) -> PowerTrace:
        self._wait_for_file()
        df = pd.read_csv(self.path, index_col=0)
        # nanoseconds whatever unit pandas infers for the index (pandas 3 keeps microseconds as parsed)
        t = pd.to_datetime(df.index).as_unit("ns").astype("int64").to_numpy() * 1e-9
        cols = [c for c in df.columns if c.endswith("_power")]
        if self.rails:
            missing = [r for r in self.rails if f"{r}_power" not in cols]
            if missing:
                raise MeterError(f"{self.path}: no power column for rails {missing} (has: {cols})")
            cols = [f"{r}_power" for r in self.rails]
        elif "12V_power" in cols:
            cols = ["12V_power"]  # the board's input rail: everything else is a subset of it
        if not cols:
            raise MeterError(f"{self.path}: no <rail>_power columns")
        w = df[cols].to_numpy(float).sum(1)
        mark = df["Mark"].to_numpy(int) if "Mark" in df else np.zeros(len(df), int)
        changes = np.flatnonzero(np.diff(mark) > 0) + 1
        board_marks = [(self.marks[i][0], float(t[c])) for i, c in enumerate(changes) if i < len(self.marks)]
        return PowerTrace(self.name, self._align(board_marks, t), watts=w)
