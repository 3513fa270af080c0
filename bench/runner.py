"""The campaign runner: variant -> artifact (cached on disk) -> verified, timed measurement -> store.

A failing cell is recorded with its reason and the campaign moves on; finished cells are never
rewritten unless asked (`resume` skips cells already finished with status ok).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import targets as target_registry
from bench import host, power
from bench.api import Artifact, Measurement, MeterError, NotRunnable, Session, Target, TargetError, Variant, cache_dir
from bench.campaign import Campaign, Cell
from bench.cell_warnings import cell_warnings
from bench.protocol import measure, throttled
from bench.rows import SCHEMA, dumps_inputs
from bench.runlock import LockedError, RunLock
from bench.stats import summarize
from bench.store import RunStore, resolve_run, write_atomic
from pruning.compress import make_variant
from pruning.errors import CompressionError
from pruning.store import load_variant

Progress = Callable[[str], None]


class RunError(RuntimeError):
    """A run directory that cannot be continued as asked (one line, nothing run)."""


@dataclass
class RunSummary:
    out: Path
    ran: int = 0
    skipped_done: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # unique, in the order first seen


def compile_cached(target: Target, variant: Variant, options) -> tuple[Artifact, float]:
    """Compile once per (variant weights, target, options, backend version); (artifact, seconds spent)."""
    key_src = json.dumps([variant.hash, target.name, target.version(), options.model_dump(mode="json")], sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    final = cache_dir() / "artifacts" / key
    if (final / "manifest.json").exists():
        return Artifact(target.name, final, json.loads((final / "manifest.json").read_text()), variant), 0.0
    work = final.with_name(f"{key}.tmp-{time.time_ns()}")
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        manifest = target.compile(variant, options, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    spent = time.perf_counter() - t0
    manifest = {**manifest, "target": target.name, "variant_hash": variant.hash, "key": key,
                "options": options.model_dump(mode="json"), "compile_s": round(spent, 3), "backend": target.version()}
    write_atomic(work / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))
    if final.exists():  # another run finished the same build first
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(final)
    return Artifact(target.name, final, manifest, variant), spent


def _base_row(camp: Campaign, run_id: str, cell: Cell, device: str | None) -> dict:
    c = cell.compression  # a cell that fails early still says what it was
    return {"campaign": camp.name, "run_id": run_id, "cell_id": cell.id, "model": cell.model.label,
            "variant": cell.variant_label or c.label, "scheme": c.scheme, "sparsity": c.sparsity if c.scheme != "none" else 0.0,
            "bits": c.bits if c.quantized else (16 if c.precision == "fp16" else 32), "target": cell.target.name,
            "device": device or "none", "status": "failed", "verified": False}


class Runner:
    def __init__(self, camp: Campaign, out: Path, progress: Progress | None = None, on_epoch=None,
                 on_cell: Callable[[dict, int], None] | None = None) -> None:
        self.camp, self.out = camp, Path(out)
        self.on_epoch = on_epoch
        self.on_cell = on_cell or (lambda _row, _done: None)  # (finished row, cells finished so far)
        self.store = RunStore(out)
        self.progress = progress or (lambda _msg: None)
        self.variants: dict[str, Variant | Exception] = {}
        self.sessions: dict[str, Session] = {}
        self._lock = threading.RLock()  # sessions and the store, when devices run cells in parallel

    def manifest(self, resumed_from: dict | None) -> dict:
        src = self.camp._source
        return {
            "campaign": self.camp.name, "campaign_hash": self.camp.hash, "run_id": self.out.name,
            "campaign_file": str(src) if src else None, "campaign_toml": src.read_text() if src else None,
            "started_at": (resumed_from or {}).get("started_at", datetime.now(UTC).isoformat()),
            "git_commit": host.git_commit(), "versions": host.versions(), "host": host.describe(),
            "cells": [c.id for c in self.camp.cells()],
        }

    def run(self, resume: bool = False, fresh: bool = False, allow_mixed: bool = False,
            replace_campaign: bool = False) -> RunSummary:
        """Run every cell not yet finished. A directory holding results is refused unless `resume`
        (the same campaign: finished cells kept) or `fresh` (its results deleted first);
        `allow_mixed` accepts resuming a run made on another commit or host; `replace_campaign`
        resumes with an edited campaign, deleting the cells it no longer has (for `reproduce`)."""
        try:
            lock = RunLock(self.out).acquire()
        except LockedError as exc:
            raise RunError(str(exc)) from None
        with lock:
            if lock.stale:
                self.progress(f"took over a stale lock of PID {lock.stale.get('pid')} on {lock.stale.get('host')}")
            prior = self.check(resume, fresh, allow_mixed, replace_campaign)
            if fresh:
                self.store.wipe()
            return self._run_locked(None if fresh else prior, allow_mixed, replace_campaign)

    def check(self, resume: bool = False, fresh: bool = False, allow_mixed: bool = False,
              replace_campaign: bool = False) -> dict | None:
        """Refuse (RunError, one line) what would orphan or mix results; read-only, so a CLI can ask before
        it starts anything. Returns the manifest of the results already in the directory, if any."""
        if not (self.out / "manifest.json").exists():
            return None
        prior = self.store.manifest()
        finished = len(list(self.store.cells_dir.glob("*.json"))) if self.store.cells_dir.is_dir() else 0
        if fresh:
            return prior
        if not resume:
            raise RunError(f"{self.out} already holds a run of campaign '{prior.get('campaign')}' ({finished} cells "
                           "finished): continue it with --resume, or start afresh with --force (deletes them)")
        if prior.get("campaign_hash") != self.camp.hash and not replace_campaign:
            was = prior.get("campaign_file") or prior.get("campaign")
            raise RunError(f"{self.out} holds a run of another campaign ({was}, hash {prior.get('campaign_hash')}; "
                           f"this one is {self.camp.hash}): --resume continues the same campaign only; use "
                           "another --out, or --force to start afresh")
        origin = {"git_commit": host.git_commit(), "host": host.describe()["hostname"]}
        _check_origin(prior, origin, self.out, allow_mixed)
        return prior

    def _run_locked(self, prior: dict | None, allow_mixed: bool, replace_campaign: bool) -> RunSummary:
        manifest = self.manifest(prior)
        origin = {"git_commit": manifest["git_commit"], "host": manifest["host"]["hostname"]}
        manifest["origins"] = _check_origin(prior, origin, self.out, allow_mixed) if prior is not None else [origin]
        self._origin = origin
        self.store.init(manifest)
        _link_latest(self.out, self.camp.name)
        cells = self.camp.cells()
        ids = [c.id for c in cells]
        if replace_campaign:
            self.store.drop_cells_except(ids)
        summary = RunSummary(self.out)
        todo = []
        for i, cell in enumerate(cells):
            done = self.store.cell(cell.id) if prior is not None else None
            if done is not None and done["row"].get("status") in ("ok", "skipped"):
                summary.skipped_done += 1
            else:
                todo.append((i, cell))
        groups: dict[str, list] = {}  # target entries spread over several devices
        try:
            for i, cell in todo:
                if cell.target.devices:
                    groups.setdefault(cell.target.model_dump_json(), []).append((i, cell))
                    continue
                self.progress(f"[{i + 1}/{len(cells)}] {cell.label}")
                self._record(cell, *self._run_cell(cell), ids, summary)
            for group in groups.values():
                self._run_spread(group, len(cells), ids, summary)
        finally:
            for s in self.sessions.values():
                s.close()
            self.store.rebuild(ids)
            m = self.store.manifest()
            m["finished_at"] = datetime.now(UTC).isoformat()
            self.store.write_manifest(m)
        return summary

    def _record(self, cell: Cell, row: dict, samples, extra: dict, ids: list[str], summary: RunSummary) -> None:
        with self._lock:
            self.store.write_cell(cell.id, row, samples, extra)
            self.store.rebuild(ids)
            summary.ran += 1
            if row["status"] == "failed":
                summary.failed.append(f"{cell.label}: {row['message']}")
            for w in extra.get("warnings", []):
                if w not in summary.warnings:
                    summary.warnings.append(w)
            self.store.add_warnings(cell.id, extra.get("warnings", []))
            self.on_cell(row, summary.ran + summary.skipped_done)

    def _run_spread(self, group: list, total: int, ids: list[str], summary: RunSummary) -> None:
        """One entry's cells over its devices: one cell per device at a time, devices in parallel.
        Variants and artifacts are built first, in this thread (the caches are then only read)."""
        for i, cell in group:
            self.progress(f"[{i + 1}/{total}] preparing {cell.label}")
            self._run_cell(cell, prepare_only=True)
        free: queue.Queue[str] = queue.Queue()
        for d in group[0][1].target.devices:
            free.put(d)

        def work(cell: Cell):
            device = free.get()
            try:
                self.progress(f"measuring {cell.label} on {device}")
                return cell, self._run_cell(cell, device)
            finally:
                free.put(device)

        with ThreadPoolExecutor(max_workers=free.qsize()) as pool:
            for fut in as_completed([pool.submit(work, c) for _, c in group]):
                cell, result = fut.result()
                self._record(cell, *result, ids, summary)

    def _variant(self, cell: Cell) -> Variant:
        key = json.dumps([cell.model.model_dump(), cell.compression.model_dump(mode="json")], sort_keys=True)
        if key not in self.variants:
            try:
                if cell.model.variant:  # made by `joulebench compress`: used as stored
                    self.variants[key] = load_variant(cell.model.variant)
                else:
                    self.progress(f"compressing {cell.model.label} / {cell.variant_label}")
                    self.variants[key] = make_variant(cell.model.spec(), cell.compression, self.on_epoch)
            except CompressionError as exc:
                self.variants[key] = exc
        v = self.variants[key]
        if isinstance(v, Exception):
            raise v
        return v

    def _drop_if_unhealthy(self, skey: str) -> None:
        """A device that dropped mid-cell is closed here and reopened by the next cell."""
        with self._lock:
            sess = self.sessions.get(skey)
            if sess is not None and not sess.healthy():
                sess.close()
                del self.sessions[skey]

    def _run_cell(self, cell: Cell, device: str | None = None, prepare_only: bool = False
                  ) -> tuple[dict, list[list[float]], dict]:
        """Run one cell (on `device`, else the entry's own); `prepare_only` stops after compiling."""
        device = device or cell.target.device
        row = _base_row(self.camp, self.out.name, cell, device)
        extra: dict = {}
        samples: list[list[float]] = []
        skey = None  # the session this cell used, once opened
        variant, snapshot_empty = None, None
        try:
            variant = self._variant(cell)
            mf = variant.manifest
            row.update({k: mf.get(k) for k in ("scheme", "sparsity", "bits", "precision", "macs_dense",
                                                "macs_effective", "params", "params_kept")})
            row["macs_masked"] = mf.get("macs_effective")  # what the masks allow; macs_effective: what was compiled
            row["accuracy"] = (mf.get("accuracy") or {}).get("final")
            row["accuracy_dataset"] = mf.get("accuracy_dataset")
            target = target_registry.get(cell.target.name)
            ok, why = target.availability()
            reason = why if not ok else target.accepts(variant)
            if reason:
                row.update(status="skipped", message=reason)
                return row, samples, extra
            options = target.parse_options(cell.target.options)
            self.progress(f"compiling {cell.label}")
            artifact, spent = compile_cached(target, variant, options)
            row.update(compile_s=spent, artifact=str(artifact.path), executed=artifact.manifest.get("executed"))
            self.store.link_artifact(cell.id, row, artifact.path)
            extra["artifact_manifest"] = artifact.manifest
            # the compiled-MAC figure, where a backend reports one, replaces the variant's own
            if "macs_effective" in artifact.manifest:
                row["macs_effective"] = artifact.manifest["macs_effective"]
            row.update({k: v for k, v in (artifact.manifest.get("row") or {}).items() if k in SCHEMA})
            if prepare_only:
                return row, samples, extra
            skey = f"{cell.target.model_dump_json()}@{device}"
            with self._lock:
                session = self.sessions.get(skey)
            if session is None:
                self.progress(f"connecting {device or cell.target.name}")
                session = target.open(device, options)
                with self._lock:
                    self.sessions[skey] = session
            # simulated/modeled figures carry their own energy model: no meter reads the host meanwhile
            meters, note = _meters(cell, target, session) if target.figures == "measured" else ([], "")
            self.progress(f"measuring {cell.label}")
            m = measure(session, artifact, self.camp.protocol, meters)
            row.update(device=session.device, status=m.status, message=m.message, verified=m.verified,
                       max_abs_err=m.max_abs_err, tolerance=m.tolerance, provenance=m.provenance,
                       energy_note=m.energy_note or note)
            extra["device_snapshot"] = {"before": asdict(m.before), "after": asdict(m.after)}
            samples = m.samples_s
            if m.status == "ok":
                row["throttled"] = throttled(m.before, m.after, self.camp.protocol)
                row.update(_figure_columns(m, row.get("macs_effective"), row.get("macs_dense")))
                snapshot_empty = m.estimate is None and m.before.empty
                if m.estimate is None:
                    extra["windows"] = {"idle": asdict(m.idle) if m.idle else None,
                                        "timed": [asdict(w) for w in m.windows]}
                    self.store.write_traces(cell.id, m.traces)
        except NotRunnable as exc:
            row.update(status="compiled", verified=None, message=str(exc))  # built, not run: nothing to verify
        except (CompressionError, TargetError, MeterError) as exc:
            row["message"] = str(exc)
        except Exception as exc:  # a bug or an unforeseen backend error: record it, keep the campaign going
            row["message"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            extra["traceback"] = traceback.format_exc()
        if row["status"] == "failed" and skey is not None:
            self._drop_if_unhealthy(skey)
        if variant is not None:
            extra["warnings"] = cell_warnings(row, variant.manifest, snapshot_empty, _classes(variant))
            row["warnings"] = "; ".join(extra["warnings"]) or None
        row.update(finished_at=datetime.now(UTC).isoformat(), **self._origin)
        return row, samples, extra


def _check_origin(prior: dict, here: dict, out: Path, allow_mixed: bool) -> list[dict]:
    """The (commit, host) pairs a resumed run's cells come from; adding a new one needs --allow-mixed."""
    origins = prior.get("origins") or [{"git_commit": prior.get("git_commit"),
                                        "host": (prior.get("host") or {}).get("hostname")}]
    if here in origins:
        return origins
    if not allow_mixed:
        was = origins[-1]
        raise RunError(f"{out} was run on commit {was['git_commit'] or 'unknown'} at host {was['host']}; this is "
                       f"commit {here['git_commit'] or 'unknown'} at host {here['host']}: resuming would mix them "
                       "(add --allow-mixed to resume anyway; the report then lists the mix)")
    return [*origins, here]


def _meters(cell: Cell, target: Target, session: Session) -> tuple[list, str]:
    """Meters for a cell. Ones the campaign names must work (else the cell fails); a target's
    defaults are used where they work, and the note says why energy is missing otherwise. A meter
    that samples on the device gets what the session offers (`Session.meter_context`)."""
    explicit = cell.target.meters is not None
    specs = cell.target.meters if explicit else target.default_meters()
    context = session.meter_context()
    meters, reasons = [], []
    for spec in specs:
        try:
            m = power.make(spec, context)
            m.check()
            meters.append(m)
        except MeterError as exc:
            if explicit:
                raise
            reasons.append(str(exc))
    if meters:
        return meters, ""
    why = "; ".join(reasons) if reasons else f"no power meter is attached to {cell.target.name}"
    return [], f"energy unavailable: {why}"


def _classes(variant: Variant) -> int | None:
    try:
        return int(variant.reference_output.shape[-1])
    except Exception:  # an output that is not a class vector: no chance level to compare with
        return None


def _figure_columns(m: Measurement, macs: int | None, macs_dense: int | None) -> dict:
    """Latency and energy columns of a finished cell, each with its kind and provenance. GOPS/W is
    given on the executed MACs and on the dense model's (a pruned model does less work per inference,
    which the dense-equivalent figure credits instead of hiding)."""
    cols = _estimate_columns(m, macs) if m.estimate is not None else _measured_columns(m, macs)
    if cols.get("gops_per_w") and macs and macs_dense:  # same energy, the dense model's operation count
        cols["gops_per_w_dense"] = cols["gops_per_w"] * macs_dense / macs
    return cols


def _measured_columns(m: Measurement, macs: int | None) -> dict:
    cols = summarize([s for rep in m.samples_s for s in rep])
    cols.update(latency_ms=cols["latency_ms_p50"], latency_kind="measured", latency_provenance=m.latency_provenance)
    if m.energy:
        e = m.energy[0]
        cols.update(avg_power_w=e.avg_power_w, idle_power_w=e.idle_power_w, energy_mj_per_inf=e.energy_mj_per_inf,
                    energy_mj_per_inf_ci=e.energy_mj_per_inf_ci, energy_total_mj_per_inf=e.energy_total_mj_per_inf,
                    inf_per_j=e.inf_per_j, gops_per_w=e.gops_per_w(macs) if macs else None,
                    power_samples=e.power_samples, meter=e.meter, energy_method=e.method, energy_kind="measured",
                    energy_provenance=m.energy_provenance)
    return cols


def _estimate_columns(m: Measurement, macs: int | None) -> dict:
    """A simulated/modeled cell: one deterministic figure each, no distribution (those columns stay empty)."""
    est = m.estimate
    lat = est.latency_s
    inputs = {"latency": lat.assumptions, **{k: {"value": f.value, "provenance": f.provenance, **f.assumptions}
                                             for k, f in est.details.items()}}
    cols = {"latency_ms": lat.value * 1e3, "latency_kind": lat.kind, "latency_provenance": lat.provenance,
            "latency_note": f"{lat.kind}: one deterministic figure, no distribution (no repeats, CI or CV)"}
    if est.energy_j is not None:
        e = est.energy_j
        inputs["energy"] = e.assumptions
        total_mj = e.value * 1e3
        cols.update(energy_total_mj_per_inf=total_mj, avg_power_w=e.value / lat.value if lat.value else None,
                    inf_per_j=1 / e.value if e.value > 0 else None, energy_kind=e.kind, energy_provenance=e.provenance,
                    gops_per_w=2 * macs * 1e-9 / e.value if macs and e.value > 0 else None)
        if est.idle_power_w is not None:
            cols.update(idle_power_w=est.idle_power_w, energy_mj_per_inf=total_mj - est.idle_power_w * lat.value * 1e3)
    cols.update({k: f.value for k, f in est.details.items() if k in SCHEMA})  # e.g. simulated cycles
    cols["model_inputs"] = dumps_inputs(inputs)
    return cols


def _link_latest(out: Path, campaign: str) -> None:
    """results/<campaign>/latest -> the newest run, so `report results/<campaign>` finds it."""
    if out.parent.name != campaign:
        return
    link = out.parent / "latest"
    tmp = out.parent / f".latest.{time.time_ns()}"
    try:
        tmp.symlink_to(out.name)
        os.replace(tmp, link)
    except OSError:  # a file system without symlinks: `report` then picks the newest run by name
        tmp.unlink(missing_ok=True)


def default_out(camp: Campaign, root: Path = Path("results")) -> Path:
    return root / camp.name / datetime.now().strftime("%Y%m%d-%H%M%S")


def latest_run(camp: Campaign, root: Path = Path("results")) -> Path | None:
    folder = root / camp.name
    if not folder.is_dir():
        return None
    run = resolve_run(folder)
    return run if (run / "manifest.json").exists() else None
