"""Results store: one JSON file per finished cell, rebuilt into Parquet after every cell.

Every write is atomic (temp file + rename), so a crash or Ctrl-C never loses or corrupts a
finished cell; `measurements.parquet` and `samples.parquet` are always a function of `cells/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd

from bench import rows as row_model
from bench.rows import COLUMNS, FORMAT_VERSION, FormatError

__all__ = ["COLUMNS", "FORMAT_VERSION", "RunStore", "StoreError", "resolve_run", "write_atomic", "write_parquet_atomic"]

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


def resolve_run(path: str | Path) -> Path:
    """A run directory, or a campaign's results folder (results/<campaign>): its latest run."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: not a run directory (it does not exist)")
    if (p / "manifest.json").exists() or not p.is_dir():
        return p
    if (p / "latest" / "manifest.json").exists():
        return (p / "latest").resolve()
    runs = sorted(d for d in p.iterdir() if d.is_dir() and (d / "manifest.json").exists())
    return runs[-1] if runs else p


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
        f = self.root / "manifest.json"
        try:
            m = json.loads(f.read_text())
        except FileNotFoundError:
            raise StoreError(f"{self.root}: not a joulebench run directory (no manifest.json)") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{f}: corrupt manifest ({str(exc).splitlines()[0]})") from None
        if not isinstance(m, dict):
            raise StoreError(f"{f}: corrupt manifest (not a JSON object)")
        return m

    # What a run writes into its directory; `wipe` deletes only these, never a user's other files.
    RUN_FILES = ("manifest.json", "measurements.parquet", "samples.parquet", "warnings.json", "report.md",
                 "report.csv", "report.html", "report.json")
    RUN_DIRS = ("cells", "traces", "plots", "artifacts")

    def wipe(self) -> None:
        """Delete a run's results (`run --force`): nothing of the old run is left to be mixed in."""
        for name in self.RUN_DIRS:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in self.RUN_FILES:
            (self.root / name).unlink(missing_ok=True)

    def drop_cells_except(self, keep: list[str]) -> None:
        """Delete the cells (their traces and warnings) of a campaign's former version, so none is orphaned."""
        keep_set = set(keep)
        for sub, suffix in (("cells", ".json"), ("traces", ".parquet")):
            for f in (self.root / sub).glob(f"*{suffix}"):
                if f.name.removesuffix(suffix) not in keep_set:
                    f.unlink()
        warnings = self.warnings()
        if set(warnings) - keep_set:
            write_atomic(self.root / "warnings.json", json.dumps({k: w for k, w in warnings.items() if k in keep_set},
                                                                  indent=2))

    def cell(self, cell_id: str) -> dict | None:
        f = self.cells_dir / f"{cell_id}.json"
        return json.loads(f.read_text()) if f.exists() else None

    def write_cell(self, cell_id: str, row: dict, samples: list[list[float]], extra: dict) -> None:
        record = {"row": row, "samples_s": samples, **extra}
        write_atomic(self.cells_dir / f"{cell_id}.json", json.dumps(record, default=str))

    def add_warnings(self, cell_id: str, warnings: list[str]) -> None:
        """warnings.json: every cell's warnings, so they outlive the terminal they were printed on."""
        f = self.root / "warnings.json"
        current = json.loads(f.read_text()) if f.exists() else {}
        if warnings:
            current[cell_id] = warnings
        else:
            current.pop(cell_id, None)
        write_atomic(f, json.dumps(current, indent=2))

    def warnings(self) -> dict[str, list[str]]:
        f = self.root / "warnings.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def link_artifact(self, cell_id: str, row: dict, artifact: Path) -> Path | None:
        """RUN/artifacts/<model>--<variant>--<target>-<id>: a link to the cell's compiled build (library,
        kernels.cl, manifest), so nobody has to find it under the cache."""
        d = self.root / "artifacts"
        d.mkdir(exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{row['model']}--{row['variant']}--{row['target']}")
        link = d / f"{slug}-{cell_id[:8]}"
        tmp = d / f".{link.name}.{os.getpid()}.tmp"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path(artifact).resolve(), target_is_directory=True)
            os.replace(tmp, link)
        except OSError:  # no symlinks here: the row's `artifact` column still names the directory
            tmp.unlink(missing_ok=True)
            return None
        return link

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
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise StoreError(f"{f}: corrupt Parquet file ({str(exc).splitlines()[0]})") from None

    def samples(self) -> pd.DataFrame:
        f = self.root / "samples.parquet"
        if not f.exists():
            return pd.DataFrame(columns=["cell_id", "repeat", "index", "latency_ms"])
        try:
            return pd.read_parquet(f)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{f}: corrupt Parquet file ({str(exc).splitlines()[0]})") from None
