"""Build a Relax module for a target, optionally tuning it with MetaSchedule.

Tuning records live in one JSON database per target under the cache dir, so a workload tuned by
one campaign is reused by every later one (MetaSchedule matches records by workload hash).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import tvm
from tvm import relax

from bench.api import TargetError, cache_dir


def tuning_dir(target: tvm.target.Target) -> Path:
    key = hashlib.sha256(json.dumps(str(target)).encode()).hexdigest()[:16]
    return cache_dir() / "tuning" / key


def tuning_records(work_dir: Path) -> int:
    f = work_dir / "database_tuning_record.json"
    return sum(1 for _ in f.open()) if f.exists() else 0


def build(mod: tvm.IRModule, target: tvm.target.Target, tune_trials: int = 0, trials_per_task: int | None = None):
    """Compile `mod`; returns (executable, tuning info for the artifact manifest)."""
    work = tuning_dir(target)
    info = {"tune_trials": tune_trials, "tuning_db": None, "tuning_records": 0}
    try:
        if tune_trials > 0 or tuning_records(work) > 0:
            work.mkdir(parents=True, exist_ok=True)
            mod = relax.pipeline.static_shape_tuning_pipeline(
                total_trials=tune_trials, target=target, work_dir=str(work),
                max_trials_per_task=trials_per_task or (tune_trials or None),
            )(mod)
            info.update(tuning_db=str(work), tuning_records=tuning_records(work))
        cur = tvm.transform.PassContext.current()
        config = dict(cur.config)
        if target.kind.name == "llvm":  # keeps the kernels' register tiles on the stack (kernels.tile_on_stack)
            config["tirx.disable_storage_rewrite"] = True
        with tvm.transform.PassContext(opt_level=cur.opt_level, required_pass=list(cur.required_pass),
                                       disabled_pass=list(cur.disabled_pass), config=config,
                                       instruments=list(cur.instruments)):
            return tvm.compile(mod, target), info
    except Exception as exc:
        raise TargetError(f"TVM build for {target.kind.name} failed: {str(exc).strip().splitlines()[-1][:300]}") from None


def kernel_names(ex) -> list[str]:
    """Compiled kernels the VM calls (its globals minus VM builtins), for the artifact manifest."""
    m = re.search(r"Globals \(#\d+\): \[(.*)\]", ex.stats())
    names = [n.strip() for n in m.group(1).split(",")] if m else []
    return [n for n in names if n and not n.startswith("vm.builtin") and n != "main"]
