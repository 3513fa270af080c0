"""Per-kernel work of a compiled GPU build, counted from the scheduled TIR that `tvm.compile` generates code from.

`capture()` records the IRModule at the end of the Relax pipeline (every PrimFunc scheduled, thread bindings in
place, the Relax `main` calling them), through a pass instrument: nothing is compiled twice. `kernel_stats(mod)`
then walks it:

- a *kernel* is a loop nest rooted at a loop bound to `blockIdx.*`/`threadIdx.*` that is not inside another one;
  the i-th such nest of PrimFunc `f` is the OpenCL kernel `f_kernel` (i = 0) or `f_kernel_<i>`, the names
  TVM's SplitHostDevice gives them;
- launch sizes: grid = the extents of the loops bound to `blockIdx.x/y/z`, block = those bound to `threadIdx.x/y/z`;
- FLOPs: arithmetic on data values (add, sub, mul, div, min, max, math calls) in every block's stored value, times
  the extents of the loops around the block. Index arithmetic (buffer indices, the gather table `idx` of the shared
  joulebench kernel, `if_then_else` conditions) and casts are not counted, nor are reduction `init` blocks, so a
  multiply-accumulate is 2 FLOPs and a conv kernel's count is its computed MACs x 2 plus its epilogue
  (bias, residual, ReLU: 1 FLOP per output element each). A block counts once per point of its iteration domain,
  so threads masked off by `T.where` (a grid padded to whole work-groups) do no counted work;
- useful FLOPs: the FLOPs outside padded tiles. TVM's generic GEMM schedule pads a block's axes to its tile (e.g.
  64 output channels computed as 256, a 147-long reduction as 160) and zeroes the padded operands with
  `if_then_else(cond, x, 0)`; the GPU executes that work (it is in `flops`), but a kernel tuned for the shape
  would not. Conjuncts of such conditions that read only output axes, or only reduction axes, are evaluated over
  those axes (the share of the domain where they hold); conjuncts mixing both (a conv's zero border) stay
  counted as work, as MAC counts count them;
- bytes: the sizes of the global (DRAM or texture) buffers the kernel reads and writes, each counted once per
  launch: the compulsory traffic of a kernel whose reuse fits on chip;
- launches per inference: every call of the PrimFunc from `main` launches each of its kernels once (times the
  extents of host loops around the kernel).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.ir.instrument import pass_instrument
from tvm.s_tir import SBlock, SBlockRealize

from targets.tvm.kernels import buffer_bytes

STATS_VERSION = 3
_ARITH = (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Min, tirx.Max, tirx.Mod, tirx.FloorDiv, tirx.FloorMod)
# math intrinsics that are one operation on a value (pure selects and reinterprets are not counted)
_MATH_CALLS = {"exp", "exp2", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "erf", "round", "nearbyint", "floor", "ceil",
               "fabs", "pow", "fma", "trunc"}
_DIMS = ("x", "y", "z")


@dataclass
class KernelStats:
    """One device kernel: launch sizes, work per launch, launches per inference."""

    name: str
    func: str  # the PrimFunc it was split from
    grid: list[int]  # blockIdx.x, y, z extents
    block: list[int]  # threadIdx.x, y, z extents (work-group size)
    flops: int  # per launch, executed
    flops_useful: int  # per launch, outside output padding (<= flops)
    bytes_read: int  # per launch
    bytes_written: int  # per launch
    dtype: str  # the dtype most of its counted arithmetic is in ("" when it does none)
    launches: int  # per inference

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass
class _Nest:
    grid: dict[str, int] = field(default_factory=dict)
    block: dict[str, int] = field(default_factory=dict)
    flops: float = 0.0
    useful: float = 0.0
    dtypes: Counter = field(default_factory=Counter)
    reads: dict = field(default_factory=dict)  # buffer name -> bytes
    writes: dict = field(default_factory=dict)
    host_repeat: int = 1


class Capture:
    """The module `tvm.compile` schedules: the last one in its pipeline that still holds Relax `main`."""

    module: tvm.IRModule | None = None


@contextmanager
def capture() -> Iterator[Capture]:
    """Record, while the block runs, the module every TVM build in it lowers to device code (last one wins)."""
    cap = Capture()

    @pass_instrument
    class _Recorder:
        def run_after_pass(self, mod: tvm.IRModule, info) -> None:
            funcs = list(mod.functions.values())
            if any(isinstance(f, relax.Function) for f in funcs) and any(isinstance(f, tirx.PrimFunc) for f in funcs):
                cap.module = mod

    cur = tvm.transform.PassContext.current()
    ctx = tvm.transform.PassContext(opt_level=cur.opt_level, required_pass=list(cur.required_pass),
                                    disabled_pass=list(cur.disabled_pass), config=dict(cur.config),
                                    instruments=[*cur.instruments, _Recorder()])
    with ctx:
        yield cap


def _is_global(buf: tirx.Buffer) -> bool:
    return str(buf.scope()).startswith("global")


def _dtype(e) -> str:
    """An expression's dtype (TVM 0.27 keeps it on the expression's PrimType)."""
    ty = getattr(e, "ty", None)
    return str(ty.dtype) if ty is not None and hasattr(ty, "dtype") else str(e.dtype)


def _is_load(e) -> bool:
    return type(e).__name__ in ("TensorLoad", "BufferLoad")  # TVM 0.27 names a buffer read TensorLoad


def _loaded(e):
    """The buffer a load reads (TVM 0.27: `source`; older: `buffer`)."""
    return e.source if hasattr(e, "source") else e.buffer


class _Counter:
    """Value arithmetic of one expression; `dtypes` collects the dtype of each counted op."""

    def __init__(self) -> None:
        self.ops = 0
        self.dtypes: Counter = Counter()
        self.loads: list[tirx.Buffer] = []
        self.conditions: list = []  # of if_then_else / Select whose else-branch is zero: where an operand is kept

    def visit(self, e) -> None:
        if _is_load(e):
            self.loads.append(_loaded(e))  # its indices are address arithmetic: not counted, but gathers load too
            for i in e.indices:
                self._loads_only(i)
            return
        if isinstance(e, _ARITH):
            self._count(e)
            self.visit(e.a)
            self.visit(e.b)
        elif isinstance(e, tirx.Cast):
            self.visit(e.value)
        elif isinstance(e, tirx.Select):
            self._loads_only(e.condition)
            if _is_zero(e.false_value):
                self.conditions.append(e.condition)
            self._branches(e.true_value, e.false_value)
        elif isinstance(e, tirx.Let):
            self.visit(e.value)
            self.visit(e.body)
        elif type(e).__name__ == "Call":
            name = str(e.op.name).rsplit(".", 1)[-1] if hasattr(e.op, "name") else ""
            if name == "if_then_else":
                self._loads_only(e.args[0])
                if _is_zero(e.args[2]):
                    self.conditions.append(e.args[0])
                self._branches(e.args[1], e.args[2])
                return
            if name in _MATH_CALLS:
                self._count(e, 2 if name == "fma" else 1)
            for a in e.args:
                self.visit(a)
        elif isinstance(e, tirx.Broadcast):
            self.visit(e.value)

    def _count(self, e, n: int = 1) -> None:
        dt = tvm.runtime.DataType(_dtype(e))
        self.ops += n * dt.lanes
        self.dtypes[f"{'float' if dt.type_code == tvm.runtime.DataTypeCode.FLOAT else 'int'}{dt.bits}"] += n * dt.lanes

    def _branches(self, a, b) -> None:
        """Only one branch runs: count the costlier."""
        ca, cb = _Counter(), _Counter()
        ca.visit(a)
        cb.visit(b)
        best = ca if ca.ops >= cb.ops else cb
        self.ops += best.ops
        self.dtypes.update(best.dtypes)
        self.loads += ca.loads + cb.loads
        self.conditions += ca.conditions + cb.conditions

    def _loads_only(self, e) -> None:
        """Index or condition expressions: no FLOPs, but the buffers they read are still traffic."""
        if _is_load(e):
            self.loads.append(_loaded(e))
            children = list(e.indices)
        elif type(e).__name__ == "Call":
            children = list(e.args)
        else:
            children = [getattr(e, a) for a in ("a", "b", "value", "condition", "true_value", "false_value", "body",
                                                "base", "stride") if hasattr(e, a)]
        for c in children:
            if isinstance(c, tvm.ir.expr.Expr):
                self._loads_only(c)


_NP_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "FloorDiv": np.floor_divide,
              "FloorMod": np.mod, "Min": np.minimum, "Max": np.maximum, "LT": np.less, "LE": np.less_equal,
              "GT": np.greater, "GE": np.greater_equal, "EQ": np.equal, "NE": np.not_equal, "And": np.logical_and,
              "Or": np.logical_or}
_MAX_POINTS = 1 << 21  # enumerate at most ~2M points of the axes a condition reads


def _eval(e, env: dict):
    """Evaluate an index/condition expression over numpy grids of its variables; None if it holds anything else."""
    name = type(e).__name__
    if isinstance(e, tirx.IntImm):
        return int(e.value)
    if isinstance(e, tirx.Var):
        return env.get(e)
    if name in _NP_BINARY:
        a, b = _eval(e.a, env), _eval(e.b, env)
        return None if a is None or b is None else _NP_BINARY[name](a, b)
    if name == "Not":
        a = _eval(e.a, env)
        return None if a is None else np.logical_not(a)
    if isinstance(e, tirx.Cast):
        return _eval(e.value, env)
    return None


def _vars(e, out: set) -> None:
    if isinstance(e, tirx.Var):
        out.add(e)
    for a in ("a", "b", "value"):
        if hasattr(e, a) and isinstance(getattr(e, a), tvm.ir.expr.Expr):
            _vars(getattr(e, a), out)


def _is_zero(e) -> bool:
    return isinstance(e, tirx.FloatImm | tirx.IntImm) and float(e.value) == 0.0


def _conjuncts(e, out: list) -> None:
    if type(e).__name__ == "And":
        _conjuncts(e.a, out)
        _conjuncts(e.b, out)
    else:
        out.append(e)


def _share(terms: list, axes: dict) -> float:
    """Share of the grid of `axes` where every term holds (1.0 when it cannot be evaluated)."""
    used: set = set()
    for t in terms:
        _vars(t, used)
    order = sorted(used, key=lambda v: v.name)
    if not order or math.prod(axes[v] for v in order) > _MAX_POINTS:
        return 1.0
    grids = np.meshgrid(*[np.arange(axes[v]) for v in order], indexing="ij")
    env = dict(zip(order, grids, strict=True))
    held = np.ones(grids[0].shape, dtype=bool)
    for t in terms:
        v = _eval(t, env)
        if v is None:
            return 1.0
        held &= np.broadcast_to(np.asarray(v, dtype=bool), held.shape)
    return float(held.mean())


def _useful_fraction(conditions: list, spatial: dict, reduce: dict) -> float:
    """Share of a block's domain outside padded tiles: conjuncts that read only its output (spatial) axes, and those
    that read only its reduction axes, evaluated jointly per group; mixed ones (conv borders) are work."""
    terms: list = []
    for cond in conditions:
        _conjuncts(cond, terms)
    groups: dict[str, list] = {"spatial": [], "reduce": []}
    for t in terms:
        used: set = set()
        _vars(t, used)
        if used and used <= set(spatial):
            groups["spatial"].append(t)
        elif used and used <= set(reduce):
            groups["reduce"].append(t)
    return _share(groups["spatial"], spatial) * _share(groups["reduce"], reduce)


def _walk(stmt, base: int, loops: int, nest: _Nest | None, nests: list[_Nest], host: int,
          axes: tuple[dict, dict] | None = None) -> None:
    """Depth-first over the scheduled TIR. A statement runs `base * loops` times per launch: `base` = instances of
    the enclosing block, `loops` = product of the loop extents between that block and the statement."""
    if isinstance(stmt, tirx.SeqStmt):
        for s in stmt.seq:
            _walk(s, base, loops, nest, nests, host, axes)
    elif isinstance(stmt, tirx.For):
        ext = int(stmt.extent) if isinstance(stmt.extent, tirx.IntImm) else 1
        tag = str(stmt.thread_binding.thread_tag) if stmt.thread_binding is not None else ""
        if tag.startswith(("blockIdx", "threadIdx")):
            if nest is None:  # a new kernel starts here
                nest = _Nest(host_repeat=host)
                nests.append(nest)
            side = nest.grid if tag.startswith("blockIdx") else nest.block
            side[tag[-1]] = max(side.get(tag[-1], 1), ext)
            _walk(stmt.body, base, loops * ext, nest, nests, host, axes)
        elif nest is None:  # a host-side loop around kernels: they launch once per iteration
            _walk(stmt.body, base, loops, nest, nests, host * ext, axes)
        else:
            _walk(stmt.body, base, loops * ext, nest, nests, host, axes)
    elif isinstance(stmt, SBlockRealize):
        _walk(stmt.block, base, loops, nest, nests, host, axes)
    elif isinstance(stmt, SBlock):
        # A block runs once per point of its iteration domain (spatial x reduction axes): that, not the loops around
        # it, counts its instances, so thread tiles larger than the output (masked by T.where) are not counted.
        # Blocks without iteration variables (root, opaque) run once per surrounding loop iteration.
        doms = [int(iv.dom.extent) for iv in stmt.iter_vars if isinstance(iv.dom.extent, tirx.IntImm)]
        count = base * (math.prod(doms) if stmt.iter_vars and len(doms) == len(stmt.iter_vars) else loops)
        kinds = {tirx.IterVar.DataPar: {}, tirx.IterVar.CommReduce: {}}
        for iv in stmt.iter_vars:
            if int(iv.iter_type) in kinds and isinstance(iv.dom.extent, tirx.IntImm):
                kinds[int(iv.iter_type)][iv.var] = int(iv.dom.extent)
        block_axes = (kinds[tirx.IterVar.DataPar], kinds[tirx.IterVar.CommReduce])
        # init blocks (reduction start values) are not counted
        _walk(stmt.body, count, 1, nest, nests, host, block_axes if stmt.iter_vars else axes)
    elif isinstance(stmt, tirx.BufferStore):
        if nest is None:  # a store outside any kernel: host code, not GPU work
            return
        runs = base * loops
        c = _Counter()
        c.visit(stmt.value)
        for i in stmt.indices:
            c._loads_only(i)
        nest.flops += c.ops * runs
        nest.useful += c.ops * runs * (_useful_fraction(c.conditions, *axes) if c.conditions and axes else 1.0)
        for k, v in c.dtypes.items():
            nest.dtypes[k] += v * runs
        for b in c.loads:
            if _is_global(b):
                nest.reads[b.name] = buffer_bytes(b)
        if _is_global(stmt.buffer):
            nest.writes[stmt.buffer.name] = buffer_bytes(stmt.buffer)
    elif isinstance(stmt, tirx.IfThenElse):
        _walk(stmt.then_case, base, loops, nest, nests, host, axes)
        if stmt.else_case is not None:
            _walk(stmt.else_case, base, loops, nest, nests, host, axes)
    elif hasattr(stmt, "body"):  # LetStmt, AttrStmt, AllocBuffer, DeclBuffer, AssertStmt, While: look inside
        _walk(stmt.body, base, loops, nest, nests, host, axes)


def func_kernels(name: str, func: tirx.PrimFunc) -> list[KernelStats]:
    """The kernels one scheduled PrimFunc launches, each with launches = 1 per call of the PrimFunc."""
    nests: list[_Nest] = []
    _walk(func.body, 1, 1, None, nests, 1)
    out = []
    for i, n in enumerate(nests):
        dtype = n.dtypes.most_common(1)[0][0] if n.dtypes else ""
        out.append(KernelStats(
            name=f"{name}_kernel" + (f"_{i}" if i else ""), func=name,
            grid=[n.grid.get(d, 1) for d in _DIMS], block=[n.block.get(d, 1) for d in _DIMS],
            flops=int(n.flops), flops_useful=int(round(n.useful)), bytes_read=sum(n.reads.values()), bytes_written=sum(n.writes.values()),
            dtype=dtype, launches=n.host_repeat))
    return out


def _calls(mod: tvm.IRModule) -> Counter:
    """How often `main` (and any Relax function it calls) calls each PrimFunc per inference."""
    prim = {gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    calls: Counter = Counter()

    def f(e) -> None:
        if isinstance(e, relax.Call):
            op = e.op
            if isinstance(op, tvm.ir.GlobalVar) and op.name_hint in prim:
                calls[op.name_hint] += 1
            elif isinstance(op, tvm.ir.Op) and op.name == "relax.call_tir":  # before CallTIRRewrite
                gv = e.args[0]
                if isinstance(gv, tvm.ir.GlobalVar) and gv.name_hint in prim:
                    calls[gv.name_hint] += 1

    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function) and gv.name_hint == "main":
            relax.analysis.post_order_visit(func, f)
    return calls


def kernel_stats(mod: tvm.IRModule) -> dict:
    """Manifest fields: `kernel_stats` (one dict per device kernel), `launches_per_inference`, totals."""
    calls = _calls(mod)
    kernels: list[KernelStats] = []
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue  # an uncalled PrimFunc (a reshape turned into a view) is still compiled: listed, 0 launches
        symbol = str(func.attrs["global_symbol"]) if func.attrs and "global_symbol" in func.attrs else gv.name_hint
        for k in func_kernels(symbol, func):
            k.launches *= calls[gv.name_hint]
            kernels.append(k)
    kernels.sort(key=lambda k: k.name)
    return {
        "kernel_stats_version": STATS_VERSION,
        "kernel_stats": [asdict(k) for k in kernels],
        "launches_per_inference": sum(k.launches for k in kernels),
        "flops_per_inference": sum(k.flops * k.launches for k in kernels),
        "useful_flops_per_inference": sum(k.flops_useful * k.launches for k in kernels),
        "bytes_per_inference": sum(k.bytes * k.launches for k in kernels),
    }


def from_manifest(manifest: dict) -> list[KernelStats]:
    """The kernels an artifact manifest recorded."""
    return [KernelStats(**k) for k in manifest.get("kernel_stats", [])]
