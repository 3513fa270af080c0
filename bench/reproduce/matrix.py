"""The mobile-vs-FPGA study's matrix as campaign files for the runner.

Models x precisions x block-pruning levels x devices. A precision runs only where it can: fp32/fp16 on mobile
GPUs (modeled `android-gpu-model`, or a real phone with `--device android-gpu=...`), int16/int8/int4/ternary/
binary on FPGAs (`fpga-sim` boards, or a real board with `--device fpga-pynq=...`); pruned binary runs because
the 16x16 blocks prune whole columns of every array's row-block (TM 8 or 16), which the accelerator skips. So the matrix is split into one campaign per (device class,
pruning level), and never holds a cell that could only be skipped or fail.

Accuracy comes from real training, shared across precisions the way the pipeline would do it per variant:
each model is trained once on the data (the *parent*, cached by make_variant), each pruning level is pruned
from it and fine-tuned once (also cached); the precisions of a level start from that checkpoint (re-pruning a
pruned checkpoint at the same sparsity keeps the same blocks), then quantize and measure held-out accuracy.
A model whose classes do not match the data (ImageNet forms on digits or CIFAR-10) runs with seeded
weights and no accuracy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.reproduce import STUDIES, ReproduceError

# precision -> (CompressionSpec fields, device class that runs it)
PRECISIONS: dict[str, tuple[dict, str]] = {
    "fp32": ({}, "gpu"),
    "fp16": ({"precision": "fp16"}, "gpu"),
    "int16": ({"bits": 16}, "fpga"),
    "int8": ({"bits": 8}, "fpga"),
    "int4": ({"bits": 4}, "fpga"),
    "ternary": ({"bits": 2}, "fpga"),
    "binary": ({"bits": 1}, "fpga"),
}
PRUNING: dict[str, float] = {"dense": 0.0, "2x": 0.5, "4x": 0.75, "8x": 0.875}  # level -> block sparsity
BLOCK = "16x16"  # rows: a multiple of every array's TM (8, 16), so an accelerator row-block reads one pruning block
CLASSES = {"gpu": "mobile GPU", "fpga": "FPGA"}
# real targets --device may add, and the class of campaigns they join
REAL_TARGETS = {"android-gpu": "gpu", "fpga-pynq": "fpga"}


@dataclass(frozen=True)
class Study:
    name: str
    models: tuple[str, ...]
    precisions: tuple[str, ...]
    pruning: tuple[str, ...]
    gpus: tuple[dict, ...]  # android-gpu-model target entries (options)
    boards: tuple[dict, ...]  # fpga-sim target entries (options)
    data: str = "digits"
    parent_epochs: int = 4
    finetune_epochs: int = 3
    lr: float = 0.01
    real: tuple[dict, ...] = field(default_factory=tuple)  # target entries added with --device

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


GPUS = ({"gpu": "adreno-650", "profile": "adreno"}, {"gpu": "mali-g78-mp14", "profile": "mali"})
GPUS_FULL = ({"gpu": "adreno-640", "profile": "adreno"}, *GPUS)


def study(name: str, quick: bool = False, full: bool = False, data: str | None = None,
          devices: list[str] | None = None) -> Study:
    """The matrix of a named study. quick: one small model trained on digits, two pruning levels, two GPUs,
    two boards (minutes on a laptop CPU); default: the CIFAR forms of ResNet-18, VGG-16, MobileNet-V2;
    full: their ImageNet forms too."""
    if name not in STUDIES:
        raise ReproduceError(f"unknown study '{name}' (known: {', '.join(STUDIES)})")
    if quick and full:
        raise ReproduceError("--quick and --full exclude each other (quick: a small matrix; full: ImageNet forms too)")
    if data is not None and data != "digits" and not Path(data).expanduser().exists():
        raise ReproduceError(f"--data {data}: not found (give a CIFAR-10 folder with data_batch_* and test_batch)")
    real = tuple(parse_device(d) for d in devices or [])
    if quick:
        s = Study(name, ("smallcnn-digits",), ("fp32", "fp16", "int8", "ternary", "binary"), ("dense", "8x"),
                  GPUS, ({"board": "zcu104", "array": "8x8"}, {"board": "ultra96-v2", "array": "8x8"}),
                  parent_epochs=3, finetune_epochs=3)
    else:
        models = ("resnet18-cifar", "vgg16-cifar", "mobilenetv2-cifar")
        if full:
            models += ("resnet18-imagenet", "vgg16-imagenet", "mobilenetv2-imagenet")
        s = Study(name, models, tuple(PRECISIONS), tuple(PRUNING), GPUS_FULL,
                  ({"board": "zcu104", "array": "16x16"}, {"board": "ultra96-v2", "array": "16x16"},
                   {"board": "zcu102", "array": "16x16"}), parent_epochs=10, finetune_epochs=3)
    return replace(s, data=str(Path(data).expanduser().resolve()) if data and data != "digits" else "digits",
                   real=real)


def parse_device(spec: str) -> dict:
    """`TARGET` or `TARGET=DEVICE[,key=value...]`, e.g. android-gpu=adb:SERIAL, fpga-pynq=tcp:HOST:PORT,board=pynq-z2."""
    head, *opts = spec.split(",")
    target, _, device = head.partition("=")
    if target not in REAL_TARGETS:
        raise ReproduceError(f"--device {spec}: '{target}' is not a real device target (expected "
                             f"{' or '.join(f'{t}=DEVICE' for t in REAL_TARGETS)}, e.g. android-gpu=adb:SERIAL)")
    entry: dict = {"name": target}
    if device:
        entry["device"] = device
    for o in opts:
        k, eq, v = o.partition("=")
        if not eq or not re.fullmatch(r"[a-z_]+", k):
            raise ReproduceError(f"--device {spec}: option '{o}' must look like key=value")
        entry[k] = int(v) if v.isdigit() else v
    if target == "fpga-pynq":
        entry.setdefault("array", "8x8")
    return entry


# ------------------------------------------------------------------------------------------- training
@dataclass
class Checkpoints:
    """Per (model, pruning level): the checkpoint its precisions start from (None: seeded weights), and the
    held-out accuracy of that checkpoint (the fp32 variant of the level is exactly these weights)."""

    paths: dict[tuple[str, str], str | None] = field(default_factory=dict)
    accuracy: dict[tuple[str, str], float | None] = field(default_factory=dict)
    dataset: str | None = None


def trainable(model: str) -> bool:
    """A model trains on the study's data (digits or CIFAR-10) when it predicts their 10 classes: every zoo model
    but the ImageNet forms (1000 classes; tests check this against the zoo, which costs a torch import here)."""
    return not model.endswith("-imagenet")


def _index_path() -> Path:
    from bench.api import cache_dir

    return cache_dir() / "reproduce" / "checkpoints.json"


def _save_state(variant, name: str) -> str:
    import torch

    from bench.api import cache_dir

    path = cache_dir() / "reproduce" / f"{name}-{variant.hash[:16]}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({k: t.detach().clone() for k, t in variant.module.state_dict().items()}, tmp)
        tmp.rename(path)
    return str(path)


def prepare(s: Study, on_epoch: Callable | None = None, progress: Callable[[str], None] = lambda _m: None
            ) -> Checkpoints:
    """Train each model's parent and each pruning level's fine-tuned checkpoint (cached by content; an index
    keyed by the training inputs lets a warm re-run skip even the cache look-ups)."""
    from pruning.spec import CompressionSpec  # pydantic only; torch is imported on a cache miss

    index_file = _index_path()
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    out = Checkpoints()
    for model in s.models:
        if not trainable(model):
            for level in s.pruning:
                out.paths[model, level] = out.accuracy[model, level] = None
            continue
        parent_spec = CompressionSpec(name="parent", pretrain_epochs=s.parent_epochs, data=s.data, lr=s.lr)
        for level in s.pruning:
            fine = CompressionSpec(name=f"{level}-parent", scheme="block", sparsity=PRUNING[level], block=BLOCK,
                                   finetune_epochs=s.finetune_epochs, data=s.data, lr=s.lr)
            key = json.dumps([model, parent_spec.model_dump(mode="json"),
                              fine.model_dump(mode="json") if PRUNING[level] else None], sort_keys=True)
            hit = index.get(key)
            if hit and Path(hit["path"]).is_file():
                out.paths[model, level], out.accuracy[model, level] = hit["path"], hit["accuracy"]
                out.dataset = hit["dataset"]
                continue
            from pruning.compress import make_variant
            from pruning.variant import ModelSpec

            progress(f"training {model} on {Path(s.data).name} ({s.parent_epochs} epochs)")
            parent = make_variant(ModelSpec(name=model), parent_spec, on_epoch)
            parent_ckpt = _save_state(parent, f"{model}-parent")
            v = parent
            if PRUNING[level]:
                progress(f"pruning {model} {level} (block {BLOCK}), fine-tuning {s.finetune_epochs} epochs")
                v = make_variant(ModelSpec(name=model, checkpoint=parent_ckpt), fine, on_epoch)
            path = parent_ckpt if v is parent else _save_state(v, f"{model}-{level}")
            acc = (v.manifest.get("accuracy") or {}).get("final")
            out.paths[model, level], out.accuracy[model, level] = path, acc
            out.dataset = v.manifest.get("accuracy_dataset")
            index[key] = {"path": path, "accuracy": acc, "dataset": out.dataset}
            index_file.parent.mkdir(parents=True, exist_ok=True)
            index_file.write_text(json.dumps(index, indent=1, sort_keys=True))
    return out


# ------------------------------------------------------------------------------------------- campaigns
def _compression(s: Study, precision: str, level: str, trained: bool) -> dict:
    fields, _ = PRECISIONS[precision]
    c: dict = {"name": f"{level}-{precision}", **fields}
    if PRUNING[level]:
        c.update(scheme="block", sparsity=PRUNING[level], block=BLOCK)
    if trained:
        c["data"] = s.data  # held-out accuracy of every variant, and calibration on real images
    return c


def campaigns(s: Study, ckpts: Checkpoints, fits: Callable[[dict, str], str | None] | None = None
              ) -> tuple[dict[str, dict], list[str]]:
    """(campaign name -> campaign document in the shape of a campaign TOML, what was left out and why).

    One campaign per (GPU, level) with every GPU target, and one per (FPGA target, level) with the precisions
    whose design point fits that board (`fits(target entry, precision)`: None, or why not; default
    `fpga_fits`, synthesis-backed and cached)."""
    fits = fits or fpga_fits
    out: dict[str, dict] = {}
    left_out: list[str] = []
    gpu_targets = [{"name": "android-gpu-model", **g} for g in s.gpus] + \
        [t for t in s.real if REAL_TARGETS[t["name"]] == "gpu"]
    groups = [("gpu", gpu_targets, [p for p in s.precisions if PRECISIONS[p][1] == "gpu"])] if gpu_targets else []
    for t in [{"name": "fpga-sim", **b} for b in s.boards] + [t for t in s.real if REAL_TARGETS[t["name"]] == "fpga"]:
        ps = []
        for p in (p for p in s.precisions if PRECISIONS[p][1] == "fpga"):
            why = fits(t, p)
            if why:
                left_out.append(f"{p} on {_label(t)}: {why}")
            else:
                ps.append(p)
        groups.append((f"fpga-{_label(t)}", [t], ps))
    for tag, targets, precisions in groups:  # every (precision, level) pair: pruned binary too (see the top)
        if not precisions:
            continue
        for level in s.pruning:
            # models trained on the data, and models that cannot be (seeded weights, no accuracy): their
            # compression entries differ (with / without data), so they are separate campaigns
            for trained in (True, False):
                group = [m for m in s.models if trainable(m) == trained]
                if not group:
                    continue
                name = f"{s.name}-{tag}-{level}" + ("" if trained else "-seeded")
                models = [{"name": m, "checkpoint": ckpts.paths.get((m, level))} for m in group]
                how = (f"checkpoints trained on {Path(s.data).name} for {s.parent_epochs} epochs"
                       + (f", block-pruned {level} ({BLOCK}) and fine-tuned {s.finetune_epochs}" if PRUNING[level] else "")
                       if trained else "seeded weights (no training data for these classes)")
                out[name] = _doc(name, f"{s.name} study, generated by `joulebench reproduce`: {how}", models,
                                 [_compression(s, p, level, trained) for p in precisions], targets)
    return out, left_out


def _label(t: dict) -> str:
    if t["name"] == "fpga-sim":
        return f"{t.get('board', 'zcu104')}-{t.get('array', '16x16')}"
    # a real board: "pynq-<board>" (the board's own name follows; fpga-pynq's default board is zcu104)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{t['name'].removeprefix('fpga-')}-{t.get('board', 'zcu104')}")


def fpga_fits(target: dict, precision: str) -> str | None:
    """None if the precision's design point fits the target's board (Yosys synthesis, in the shared hardware
    cache, which the compile would run anyway), else one line saying what is short. Answers are kept in
    $JOULEBENCH_CACHE/reproduce/fits.json (a changed RTL that no longer fits then fails its cells, loudly)."""
    from bench.api import cache_dir

    key = json.dumps([target, precision], sort_keys=True)
    f = cache_dir() / "reproduce" / "fits.json"
    known = json.loads(f.read_text()) if f.exists() else {}
    if key not in known:
        from bench.api import TargetError
        from targets.fpga.design import DesignPoint
        from targets.fpga.target import WEIGHT_MODE_OF_BITS, FpgaOptions, board_of, resources_for

        opts = FpgaOptions(**{k: v for k, v in target.items() if k in FpgaOptions.model_fields})
        bits = PRECISIONS[precision][0]["bits"]
        mode = WEIGHT_MODE_OF_BITS[bits]
        tm, tn = (int(x) for x in opts.array_for(mode).split("x"))
        try:
            resources_for(DesignPoint(tm=tm, tn=tn, weight_mode=mode, act_bits=16 if bits == 16 else 8), board_of(opts))
            known[key] = None
        except TargetError as exc:
            known[key] = str(exc)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(known, indent=1, sort_keys=True))
    return known[key]


def _doc(name: str, description: str, models: list[dict], comp: list[dict], targets: list[dict]) -> dict:
    return {"campaign": {"name": name, "description": description},
            "models": models, "compression": comp, "targets": targets}


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string for these characters


def to_toml(doc: dict) -> str:
    lines = ["# Generated by `joulebench reproduce`; edit and run with `joulebench run THIS_FILE`."]
    for key, val in doc.items():
        tables = val if isinstance(val, list) else [val]
        for t in tables:
            lines += ["", f"[[{key}]]" if isinstance(val, list) else f"[{key}]"]
            lines += [f"{k} = {_value(v)}" for k, v in t.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_campaigns(docs: dict[str, dict], out: Path) -> list[tuple[Path, bool]]:
    """Write each campaign as TOML under out/campaigns/; (path, whether the file was already exactly this).
    A campaign the matrix no longer generates (e.g. after a --device was dropped) is removed."""
    d = out / "campaigns"
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in docs.items():
        p = d / f"{name}.toml"
        text = to_toml(doc)
        same = p.exists() and p.read_text() == text
        if not same:
            p.write_text(text)
        written.append((p, same))
    for stale in set(d.glob("*.toml")) - {p for p, _ in written}:
        stale.unlink()
    return written
