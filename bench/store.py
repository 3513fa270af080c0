"""Results store: one JSON file per finished cell, rebuilt into Parquet after every cell.

Every write is atomic (temp file + rename), so a crash or Ctrl-C never loses or corrupts a
finished cell; `measurements.parquet` and `samples.parquet` are always a function of `cells/`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from bench import rows as row_model
from bench.rows import COLUMNS, FORMAT_VERSION, FormatError

__all__ = ["COLUMNS", "FORMAT_VERSION", "RunStore", "StoreError", "write_atomic", "write_parquet_atomic"]

class StoreError(RuntimeError):
    pass


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def init(self, manifest: dict) -> None:
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest({**manifest, "format_version": FORMAT_VERSION})

    def write_manifest(self, manifest: dict) -> None:
        write_atomic(self.root / "manifest.json", json.dumps(manifest, indent=2, default=str))

    def manifest(self) -> dict:
        try:
            return json.loads((self.root / "manifest.json").read_text())
        except FileNotFoundError:
            raise StoreError(f"{self.root}: not a joulebench run directory (no manifest.json)") from None

    def cell(self, cell_id: str) -> dict | None:
        f = self.cells_dir / f"{cell_id}.json"
        return json.loads(f.read_text()) if f.exists() else None

    def write_cell(self, cell_id: str, row: dict, samples: list[list[float]], extra: dict) -> None:
        record = {"row": row, "samples_s": samples, **extra}
        write_atomic(self.cells_dir / f"{cell_id}.json", json.dumps(record, default=str))

    def write_traces(self, cell_id: str, traces) -> None:
        """Raw power traces of a cell, beside the measurements: traces/<cell_id>.parquet."""
        if not traces:
            return
        frames = [pd.DataFrame({"meter": tr.meter, "t_s": tr.t,
                                "watts": tr.watts if tr.watts is not None else float("nan"),
                                "joules": tr.joules if tr.joules is not None else float("nan")}) for tr in traces]
        d = self.root / "traces"
        d.mkdir(exist_ok=True)
        write_parquet_atomic(pd.concat(frames), d / f"{cell_id}.parquet")

    def rebuild(self, cell_ids: list[str]) -> pd.DataFrame:
        rows, samples = [], []
        for cid in cell_ids:
            rec = self.cell(cid)
            if rec is None:
                continue
            rows.append(rec["row"])
            for r, rep in enumerate(rec["samples_s"]):
                samples += [{"cell_id": cid, "repeat": r, "index": i, "latency_ms": s * 1e3} for i, s in enumerate(rep)]
        df = row_model.frame(rows)
        tmp = self.root / f".measurements.parquet.{os.getpid()}.tmp"
        row_model.write(df, tmp)
        os.replace(tmp, self.root / "measurements.parquet")
        write_parquet_atomic(pd.DataFrame(samples, columns=["cell_id", "repeat", "index", "latency_ms"]),
                             self.root / "samples.parquet")
        return df

    def measurements(self) -> pd.DataFrame:
        f = self.root / "measurements.parquet"
        if not f.exists():
            raise StoreError(f"{self.root}: no measurements.parquet here; run a campaign with `joulebench run` first")
        try:
            return row_model.read(f)
        except FormatError as exc:
            raise StoreError(str(exc)) from None

    def samples(self) -> pd.DataFrame:
        f = self.root / "samples.parquet"
        return pd.read_parquet(f) if f.exists() else pd.DataFrame(columns=["cell_id", "repeat", "index", "latency_ms"])
