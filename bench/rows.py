"""The one row model of `measurements.parquet`: every column, its type and meaning, and the format version.

A run directory records FORMAT_VERSION in `manifest.json` and in the Parquet file's metadata. Readers
accept this version and the previous one (upgraded on read: the columns it lacked are derived or left
empty); any other version is refused with one line.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 2
READABLE = (1, 2)
META_KEY = b"joulebench.format_version"

# column -> (pandas dtype, meaning). Units are in the names: _ms, _w, _mj, _s.
SCHEMA: dict[str, tuple[str, str]] = {
    "campaign": ("string", "campaign name"),
    "run_id": ("string", "run directory name"),
    "cell_id": ("string", "content hash of everything that decides the cell's result"),
    "model": ("string", "model label"),
    "variant": ("string", "compression label (unique per campaign)"),
    "scheme": ("string", "pruning scheme"),
    "sparsity": ("float64", "target sparsity"),
    "bits": ("Int64", "weight bits (32: float)"),
    "precision": ("string", "the variant's numeric precision"),
    "executed": ("string", "precision the target actually executed (e.g. fp32 for a quantized variant run dequantized)"),
    "target": ("string", "backend"),
    "device": ("string", "device the cell ran on"),
    "status": ("string", "ok | failed | skipped | compiled (built, not run: no device)"),
    "message": ("string", "why a cell did not finish ok"),
    "verified": ("boolean", "output matched the reference before any figure was taken (empty: not run)"),
    "max_abs_err": ("float64", "max |output - reference|"),
    "tolerance": ("float64", "allowed max |error|"),
    "latency_ms": ("float64", "headline latency per inference: the measured median, or the simulated/modeled value"),
    "latency_kind": ("string", "measured | simulated | modeled"),
    "latency_provenance": ("string", "measured:<timer> | simulated:<simulator> | modeled:<model>@<version>"),
    "latency_ms_p50": ("float64", "median of measured samples (measured only)"),
    "latency_ms_p90": ("float64", "90th percentile (measured only)"),
    "latency_ms_p99": ("float64", "99th percentile (measured only)"),
    "latency_ms_mean": ("float64", "mean (measured only)"),
    "latency_cv": ("float64", "coefficient of variation (measured only)"),
    "latency_ms_ci_low": ("float64", "bootstrap 95% CI of the median, low (measured only)"),
    "latency_ms_ci_high": ("float64", "bootstrap 95% CI of the median, high (measured only)"),
    "runs": ("Int64", "measured inferences (measured only)"),
    "latency_note": ("string", "why distribution columns are empty"),
    "macs_dense": ("Int64", "MACs of the dense model"),
    "macs_effective": ("Int64", "MACs the compiled artifact executes"),
    "macs_masked": ("Int64", "MACs the masks allow"),
    "params": ("Int64", "parameters of the dense model"),
    "params_kept": ("Int64", "parameters kept"),
    "accuracy": ("float64", "held-out top-1 of the variant"),
    "accuracy_dataset": ("string", "dataset of the accuracy"),
    "avg_power_w": ("float64", "average power over the timed window or the modeled inference"),
    "idle_power_w": ("float64", "idle power"),
    "energy_mj_per_inf": ("float64", "idle-subtracted energy per inference"),
    "energy_mj_per_inf_ci": ("float64", "95% CI half-width over repeats (measured only)"),
    "energy_total_mj_per_inf": ("float64", "energy per inference including idle power"),
    "inf_per_j": ("float64", "inferences per joule of total energy"),
    "gops_per_w": ("float64", "2 x executed MACs per joule / 1e9"),
    "gops_per_w_dense": ("float64", "2 x the dense model's MACs per joule / 1e9 (dense-equivalent work)"),
    "power_samples": ("Int64", "meter samples in the timed window (measured only)"),
    "meter": ("string", "power meter (measured only)"),
    "energy_method": ("string", "integration method (measured only)"),
    "energy_kind": ("string", "measured | simulated | modeled"),
    "energy_provenance": ("string", "measured:<meter> | modeled:<model>@<version>"),
    "throttled": ("boolean", "a clock dropped or a temperature crossed the limit during the cell"),
    "energy_note": ("string", "why there is no energy figure, or a caveat on it"),
    "provenance": ("string", "latency and energy provenance, comma-separated"),
    "model_inputs": ("string", "JSON: every input of a simulated/modeled figure (clock, bandwidth, counts...)"),
    "board": ("string", "FPGA board of the catalog (FPGA targets)"),
    "clock_mhz": ("float64", "fabric clock (FPGA targets)"),
    "array": ("string", "MAC array TMxTN (FPGA targets)"),
    "lut": ("Int64", "LUTs of the synthesized design (Yosys)"),
    "ff": ("Int64", "flip-flops of the synthesized design (Yosys)"),
    "dsp": ("Int64", "DSP slices of the synthesized design (Yosys)"),
    "bram36": ("float64", "36 Kb block RAMs of the synthesized design (Yosys; RAMB18 count as 0.5)"),
    "cycles": ("Int64", "accelerator cycles per inference (simulated:verilator, the RTL's cycle counter)"),
    "bytes_moved": ("Int64", "accelerator DDR bytes per inference (simulated:verilator, RTL counters)"),
    "offloaded_mac_fraction": ("float64", "share of the compiled MACs that run on the accelerator"),
    "compile_s": ("float64", "seconds spent compiling (0: cached)"),
    "artifact": ("string", "artifact directory"),
    "git_commit": ("string", "joulebench commit the cell ran on"),
    "host": ("string", "host name the cell ran on"),
    "finished_at": ("string", "UTC time the cell finished"),
    "warnings": ("string", "warnings about the cell, '; '-separated (also in the run's warnings.json)"),
}
COLUMNS = list(SCHEMA)


class FormatError(RuntimeError):
    """A results file of a format version this joulebench cannot read."""


def frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame with exactly the schema's columns and types (then any extra columns, sorted)."""
    extra = sorted({k for r in rows for k in r} - set(SCHEMA))
    df = pd.DataFrame(rows, columns=COLUMNS + extra)
    for col, (dtype, _) in SCHEMA.items():
        if dtype == "string":
            df[col] = df[col].astype("string")
        elif dtype == "boolean":
            df[col] = df[col].astype("boolean")
        elif dtype == "Int64":
            df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df


def write(df: pd.DataFrame, tmp) -> None:
    """Parquet with the format version in its schema metadata, written to `tmp` (the caller renames it into place)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: str(FORMAT_VERSION).encode()})
    pq.write_table(table, tmp)


def version_of(path) -> int:
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(META_KEY, b"1"))  # files before versioning are format 1


def read(path) -> pd.DataFrame:
    """A measurements file of a readable version, upgraded to this one."""
    found = version_of(path)
    if found not in READABLE:
        raise FormatError(f"{path}: results format version {found}; this joulebench reads versions "
                          f"{', '.join(map(str, READABLE))} (upgrade joulebench to read it)")
    df = pd.read_parquet(path)
    return upgrade(df) if found == 1 else with_all_columns(df)


def with_all_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Columns added to the schema after a file of this format was written come back empty, typed, so
    every reader can rely on them (e.g. `executed`, `gops_per_w_dense`, `warnings`)."""
    missing = [c for c in SCHEMA if c not in df]
    if not missing:
        return df
    return df.assign(**{c: pd.Series(None, index=df.index, dtype=SCHEMA[c][0]) for c in missing})


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """Format 1 (every figure measured, no per-figure provenance) -> this format."""
    rows = df.to_dict("records")
    for r in rows:
        ok = r.get("status") == "ok"
        r.setdefault("latency_ms", r.get("latency_ms_p50"))
        timed = ok and r.get("latency_ms_p50") == r.get("latency_ms_p50")  # not NaN
        r.setdefault("latency_kind", "measured" if timed else None)
        prov = [p.strip() for p in str(r.get("provenance") or "").split(",") if p.strip()]
        r.setdefault("latency_provenance", prov[0] if prov else None)
        r.setdefault("energy_provenance", prov[1] if len(prov) > 1 else None)
        r.setdefault("energy_kind", "measured" if len(prov) > 1 else None)
    return frame(rows)


def describe() -> str:
    """The schema as a Markdown table (docs)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c}` | {t} | {m} |" for c, (t, m) in SCHEMA.items()]
    return "\n".join(lines)


def dumps_inputs(inputs: dict) -> str:
    return json.dumps(inputs, sort_keys=True, default=str)
