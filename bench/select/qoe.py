"""User-defined quality of experience (QoE): a safe arithmetic expression over a variant's figures on a device.

An expression is parsed with `ast` and checked against a whitelist before anything is evaluated: numbers, the
names below (figures and parameters), + - * / ** and unary minus, comparisons (True = 1), `a if cond else b`, and
the functions min, max, exp, log, sqrt, abs, clip. Raw strings are never passed to `eval`: the checked tree is
walked by a small interpreter that works on floats and on numpy arrays alike (the simulator evaluates whole
devices x variants matrices at once). Every problem is one line naming it: `--qoe: unknown name 'acuracy'
(did you mean 'accuracy'?)`.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Figures of one variant on one device; the QoE may use any of them (units in the names).
FIGURES: dict[str, str] = {
    "accuracy": "held-out top-1 of the variant, a fraction in [0, 1]",
    "latency_ms": "latency per inference, ms (measured median, or the simulated/modeled value)",
    "energy_mj": "idle-subtracted energy per inference, mJ",
    "power_w": "average active power during an inference, W (energy_mj / latency_ms)",
    "macs_m": "MACs the variant executes, millions",
    "macs_dense_m": "MACs of the dense model, millions",
    "params_m": "parameters kept, millions",
    "sparsity": "target sparsity of the variant, in [0, 1)",
    "bits": "weight bits (32: float)",
}

DEFAULT_EXPR = ("accuracy - w_latency * min(1, max(0, latency_ms / deadline_ms - 1))"
                " - w_energy * energy_mj / energy_ref_mj")

# Parameters of the default QoE: each a number set on the command line (--param NAME=VALUE) or in a TOML file.
DEFAULT_PARAMS: dict[str, float] = {
    "deadline_ms": 33.0,  # one frame at 30 frames/s
    "w_latency": 1.0,  # QoE lost per deadline's worth of overrun, at most once: 2x the deadline or later costs 1.0
    "energy_ref_mj": 10.0,  # the energy a user counts as "one unit"
    "w_energy": 0.05,  # QoE lost per energy_ref_mj per inference: 5 accuracy points per 10 mJ
}
PARAM_HELP: dict[str, str] = {
    "deadline_ms": "latency a user tolerates, ms",
    "w_latency": "QoE lost per deadline's worth of latency over the deadline (saturates at 2x the deadline)",
    "energy_ref_mj": "energy scale, mJ per inference",
    "w_energy": "QoE lost per energy_ref_mj of energy per inference",
}


class QoEError(ValueError):
    """A bad QoE expression or parameter; the message is one line naming the problem."""


def _where(what: str) -> str:
    return f"{what}: " if what else ""


def _clip(x, lo, hi):
    return np.clip(x, lo, hi)


def _log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


FUNCTIONS: dict[str, tuple[Callable, int]] = {  # name -> (implementation, arity)
    "min": (np.minimum, 2),
    "max": (np.maximum, 2),
    "exp": (np.exp, 1),
    "log": (_log, 1),
    "sqrt": (np.sqrt, 1),
    "abs": (np.abs, 1),
    "clip": (_clip, 3),
}
_BINOPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                                 ast.Div: operator.truediv, ast.Pow: operator.pow}
_CMPOPS: dict[type, Callable] = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
                                 ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.FloorDiv: "//",
           ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
           ast.RShift: ">>"}


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class QoE:
    """A checked QoE expression and its parameter values."""

    expr: str
    params: Mapping[str, float]
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()  # the figures and parameters it uses

    @property
    def figures(self) -> frozenset[str]:
        return frozenset(n for n in self.names if n in FIGURES)

    def with_params(self, **values: float) -> QoE:
        """The same expression with some parameters replaced (the simulator's users set their own)."""
        return QoE(self.expr, {**self.params, **values}, self.tree, self.names)

    def __call__(self, figures: Mapping[str, object], params: Mapping[str, object] | None = None):
        """Evaluate on figures (floats or numpy arrays broadcasting together); `params` overrides per call."""
        env = {**self.params, **(params or {}), **figures}
        missing = sorted(n for n in self.names if n not in env)
        if missing:
            raise QoEError(f"--qoe: no value for {', '.join(missing)}")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = _eval(self.tree.body, env)
        arr = np.asarray(out, dtype=float)
        return float(arr) if arr.ndim == 0 else arr


def parse(expr: str | None = None, params: Mapping[str, float] | None = None, *, what: str = "--qoe") -> QoE:
    """Check `expr` (the default QoE if None) against the whitelist; `params` are parameter values.

    Every name must be a figure (FIGURES), a parameter with a value, or a whitelisted function."""
    text = DEFAULT_EXPR if expr is None else expr
    values = {**DEFAULT_PARAMS, **(params or {})}
    if not text.strip():
        raise QoEError(f"{_where(what)}empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise QoEError(f"{_where(what)}syntax error{col}: {exc.msg} in '{text.strip()}'") from None
    names: set[str] = set()
    _check(tree.body, values, names, what)
    return QoE(text.strip(), values, tree, frozenset(names))


def _check(node: ast.AST, params: Mapping[str, float], names: set[str], what: str) -> None:
    known = sorted({*FIGURES, *params})
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise QoEError(f"{_where(what)}only numbers are allowed as constants, got {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise QoEError(f"{_where(what)}'{node.id}' is a function: call it, e.g. {node.id}(...)")
        if node.id not in FIGURES and node.id not in params:
            raise QoEError(f"{_where(what)}unknown name '{node.id}'{_suggest(node.id, known)}; "
                           f"known: {', '.join(known)}")
        names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise QoEError(f"{_where(what)}operator '{_SYMBOL.get(type(node.op), type(node.op).__name__)}' "
                           f"is not allowed; use + - * / **")
        _check(node.left, params, names, what)
        _check(node.right, params, names, what)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise QoEError(f"{_where(what)}unary operator '{type(node.op).__name__}' is not allowed")
        _check(node.operand, params, names, what)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise QoEError(f"{_where(what)}comparison '{type(op).__name__}' is not allowed")
        for sub in (node.left, *node.comparators):
            _check(sub, params, names, what)
    elif isinstance(node, ast.IfExp):
        for sub in (node.test, node.body, node.orelse):
            _check(sub, params, names, what)
    elif isinstance(node, ast.Call):
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        if fn not in FUNCTIONS:
            shown = fn or ast.unparse(node.func)
            raise QoEError(f"{_where(what)}unknown function '{shown}'{_suggest(shown, sorted(FUNCTIONS))}; "
                           f"allowed: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise QoEError(f"{_where(what)}{fn}() takes no keyword arguments")
        arity = FUNCTIONS[fn][1]
        if len(node.args) != arity:
            raise QoEError(f"{_where(what)}{fn}() takes {arity} argument{'s' if arity > 1 else ''}, "
                           f"got {len(node.args)}")
        for arg in node.args:
            _check(arg, params, names, what)
    else:
        raise QoEError(f"{_where(what)}'{ast.unparse(node)}' is not allowed (numbers, names, + - * / **, "
                       f"comparisons, a if c else b, {', '.join(sorted(FUNCTIONS))})")


def _eval(node: ast.AST, env: Mapping[str, object]):
    """Interpret a tree `_check` accepted (nothing else reaches here)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Compare):
        left, out = _eval(node.left, env), True
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            out = np.logical_and(out, _CMPOPS[type(op)](left, right))
            left = right
        return np.asarray(out, dtype=float) if isinstance(out, np.ndarray) else float(out)
    if isinstance(node, ast.IfExp):
        return np.where(_eval(node.test, env), _eval(node.body, env), _eval(node.orelse, env))
    if isinstance(node, ast.Call):
        fn = FUNCTIONS[node.func.id][0]
        return fn(*(_eval(a, env) for a in node.args))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover


def parse_param(text: str) -> tuple[str, float]:
    """`NAME=VALUE` from the command line."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise QoEError(f"--param: expected NAME=VALUE, got '{text}'")
    try:
        return name, float(value)
    except ValueError:
        raise QoEError(f"--param {name}: expected a number, got '{value.strip()}'") from None


def load_toml(path: str | Path) -> tuple[str | None, dict[str, float]]:
    """A QoE file: optional `expr = "..."` and a `[params]` table of numbers (top-level numbers also count)."""
    path = Path(path)
    if not path.is_file():
        raise QoEError(f"{path}: QoE file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise QoEError(f"{path}: malformed TOML: {exc}") from None
    data = data.get("qoe", data)  # accept a [qoe] table too
    expr = data.get("expr")
    if expr is not None and not isinstance(expr, str):
        raise QoEError(f"{path}: expr: expected a string, got {type(expr).__name__}")
    params: dict[str, float] = {}
    raw = dict(data.get("params", {}))
    raw.update({k: v for k, v in data.items() if k not in ("expr", "params")})
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise QoEError(f"{path}: params.{k}: expected a number, got {v!r}")
        if not k.isidentifier():
            raise QoEError(f"{path}: params.{k}: not a valid name")
        params[k] = float(v)
    return expr, params


def build(expr: str | None, toml: str | Path | None, params: list[str]) -> QoE:
    """The QoE of the command line: a TOML file first, then --qoe and --param override it."""
    file_expr, file_params = load_toml(toml) if toml is not None else (None, {})
    overrides = dict(parse_param(p) for p in params)
    q = parse(expr if expr is not None else file_expr, {**file_params, **overrides},
              what="--qoe" if expr is not None else (f"{toml}: expr" if file_expr is not None else "--qoe"))
    for k, v in q.params.items():
        if not math.isfinite(v):
            raise QoEError(f"--param {k}: must be a finite number, got {v}")
    return q
