"""The model zoo's table (`joulebench models`), cached so the command answers without importing torch.

Counting MACs means building and tracing every model (seconds, and torch's import alone takes more than
a second); the counts change only when the zoo or the counter changes, so the table is cached under a
digest of those sources.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pruning
from pruning.paths import cache_dir  # not pruning.variant: that imports torch

_SOURCES = ("zoo/*.py", "macs.py", "graph.py")


def _digest() -> str:
    root = Path(pruning.__file__).parent
    h = hashlib.blake2b(digest_size=12)
    for pattern in _SOURCES:
        for f in sorted(root.glob(pattern)):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def zoo_table() -> list[dict]:
    """One dict per zoo model: name, dataset, input, MACs and parameters counted from its graph, paper."""
    f = cache_dir() / "zoo" / f"table-{_digest()}.json"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        pass
    rows = _count()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, f)
    return rows


def _count() -> list[dict]:
    import torch

    from pruning import zoo
    from pruning.macs import count_module

    rows = []
    for e in zoo.ZOO.values():
        c = count_module(zoo.build(e.name), torch.zeros(1, *e.input_shape))
        rows.append({"model": e.name, "dataset": e.dataset, "input": list(e.input_shape), "macs": c.macs_dense,
                     "params": c.params, "reference": e.paper})
    return rows
