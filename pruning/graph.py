"""A trainable torch module from a torch.export program (`.pt2`), for compression like a zoo model.

`ExportedProgram.module()` gives a GraphModule whose weights hang off plain `Module` containers and
are read by get_attr nodes: it refuses train()/eval(), guards the exported batch size, and has no
nn.Conv2d / nn.Linear for layer discovery, hooks or parametrizations. Here each aten.conv2d /
aten.linear / aten.batch_norm call whose weights belong to one container becomes a call of a real
nn.Conv2d / nn.Linear / nn.BatchNorm holding the same parameters, under the same name: the
state_dict keys stay those of the program, and the zoo code paths (pruning/schemes, quant, train)
apply unchanged, batch-norm statistics included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import fx, nn

from pruning.errors import CompressionError

aten = torch.ops.aten


def _arguments(node: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    out = {}
    for i, a in enumerate(node.target._schema.arguments):
        out[a.name] = node.args[i] if i < len(node.args) else node.kwargs.get(a.name, a.default_value)
    return out


def _conv2d(a: dict, w: torch.Tensor, rank: int) -> nn.Module | None:
    if w.ndim != 4:
        return None
    groups = int(a["groups"])
    return nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), a["stride"], a["padding"], a["dilation"],
                     groups, bias=a["bias"] is not None, device="meta")


def _linear(a: dict, w: torch.Tensor, rank: int) -> nn.Module | None:
    return nn.Linear(w.shape[1], w.shape[0], bias=a["bias"] is not None, device="meta") if w.ndim == 2 else None


def _batch_norm(a: dict, w: torch.Tensor, rank: int) -> nn.Module | None:
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
    if cls is None or a["running_mean"] is None or a["bias"] is None:
        return None
    return cls(w.shape[0], eps=a["eps"], momentum=a["momentum"], device="meta")


# op -> (module builder, tensor arguments held by the module, under their attribute names)
_MODULES: dict[object, tuple[Callable, dict[str, str]]] = {
    aten.conv2d.default: (_conv2d, {"weight": "weight", "bias": "bias"}),
    aten.linear.default: (_linear, {"weight": "weight", "bias": "bias"}),
    aten.batch_norm.default: (_batch_norm, {"weight": "weight", "bias": "bias", "running_mean": "running_mean",
                                            "running_var": "running_var"}),
}


def trainable_module(ep: torch.export.ExportedProgram) -> fx.GraphModule:
    """A copy of the program as a GraphModule with real layer modules (see the module docstring), in eval mode."""
    gm = copy.deepcopy(ep.module(check_guards=False))  # a copy: the program's own tensors are never trained
    uses: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            uses[n.target] = uses.get(n.target, 0) + len(n.users)
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _MODULES:
            _to_module(gm, node, uses)
    for n in list(gm.graph.nodes):
        if n.op == "get_attr" and not n.users:
            gm.graph.erase_node(n)
    return fx.GraphModule(gm, gm.graph).eval()


def _to_module(gm: fx.GraphModule, node: fx.Node, uses: dict[str, int]) -> None:
    """Replace one call by a module call when its tensors are exactly the attributes of one container."""
    build, held = _MODULES[node.target]
    a = _arguments(node)
    given = {attr: a[arg] for arg, attr in held.items() if a[arg] is not None}
    if "weight" not in given or not all(isinstance(v, fx.Node) and v.op == "get_attr" and uses[v.target] == 1 for v in given.values()):
        return  # a computed or shared (tied) weight stays a functional call
    owners = {v.target.rpartition(".")[0] for v in given.values()}
    if len(owners) != 1 or not all(v.target.rpartition(".")[2] == attr for attr, v in given.items()):
        return
    owner_name = owners.pop()
    if not owner_name:
        return
    owner = gm.get_submodule(owner_name)
    own = {**dict(owner.named_parameters(recurse=False)), **dict(owner.named_buffers(recurse=False))}
    if list(owner.children()) or set(own) - set(given) - {"num_batches_tracked"}:
        return  # the container holds more than this call's tensors: leave it alone
    module = build(a, own["weight"], node.args[0].meta["val"].ndim)
    if module is None:
        return
    for name, t in own.items():
        setattr(module, name, t)  # the program's own Parameter / buffer objects, so names and values carry over
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.num_batches_tracked.is_meta:
        module.num_batches_tracked = torch.tensor(0)  # a program without the counter: start one
    parent, _, leaf = owner_name.rpartition(".")
    setattr(gm.get_submodule(parent), leaf, module)
    with gm.graph.inserting_before(node):
        call = gm.graph.call_module(owner_name, (a["input"],))
    call.meta = dict(node.meta)
    node.replace_all_uses_with(call)
    gm.graph.erase_node(node)


@torch.no_grad()
def check_batch_free(module: nn.Module, input_shape: tuple[int, ...], path: str) -> None:
    """Training and calibration feed other batch sizes than the exported one: refuse a graph that bakes it in."""
    b = input_shape[0]
    x = torch.randn((b + 1, *input_shape[1:]), generator=torch.Generator().manual_seed(0))
    was = module.training
    module.eval()
    try:
        ok = torch.allclose(module(x)[:b], module(x[:b]), rtol=1e-4, atol=1e-5)
    except Exception:  # a view/reshape with the exported batch size fails on any other
        ok = False
    module.train(was)
    if not ok:
        raise CompressionError(f"{path}: the program only runs at batch {b}; export it with a dynamic batch "
                               "dimension (torch.export dynamic_shapes) to compress it")
