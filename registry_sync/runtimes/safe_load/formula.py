"""Formulas a statsmodels model carries: statsmodels evaluates each term as Python (through
patsy, with the builtins in scope) while it unpickles and predicts, so a term such as
`__import__('os').system(...)` would run. Only arithmetic on column names and the usual
formula functions pass."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from registry_sync.runtimes.safe_load.policy import RefusedError

__all__ = ["FORMULA_FUNCTIONS", "NUMPY_FUNCTIONS", "check_formula", "check_statsmodels_state"]

# patsy's formula builtins (patsy/builtins.py), the names a formula may call.
FORMULA_FUNCTIONS = frozenset(
    {"C", "I", "Q", "Treatment", "Poly", "Sum", "Helmert", "Diff", "center", "standardize"}
    | {"scale", "bs", "cr", "cc", "te"}
)
# np.<name>(...) / numpy.<name>(...) inside a formula: elementwise maths only.
NUMPY_FUNCTIONS = frozenset(
    {"abs", "absolute", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "square"}
    | {"power", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}
    | {"floor", "ceil", "round", "clip", "minimum", "maximum", "sign"}
)
_PLAIN: tuple[type[ast.AST], ...] = (ast.Expression, ast.keyword, ast.Tuple, ast.List)
_PLAIN += (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)
_MAX_EXPONENT = 16
# Keys of a statsmodels object's state that statsmodels hands to its formula engine.
_SPEC_KEYS = frozenset({"model_spec", "design_info"})


def check_formula(formula: str) -> None:
    """RefusedError unless every term of `formula` is plain arithmetic and formula functions."""
    from patsy import PatsyError
    from patsy.parse_formula import parse_formula

    try:
        tree = parse_formula(formula)
    except PatsyError as exc:
        raise RefusedError(f"formula {formula!r}", f"does not parse: {exc}") from None
    for code in _python_terms(tree):
        try:
            parsed = ast.parse(code, mode="eval")
        except SyntaxError:
            raise RefusedError(f"formula term {code!r}", "is not an expression") from None
        for node in ast.walk(parsed):
            problem = _problem(node)
            if problem:
                raise RefusedError(f"formula term {code!r}", problem)


def _python_terms(node: Any) -> Iterable[str]:
    token = getattr(node, "token", None)
    if node.type == "PYTHON_EXPR" and token is not None:
        yield str(token.extra)
    for child in node.args:
        yield from _python_terms(child)


def _problem(node: ast.AST) -> str | None:
    if isinstance(node, _PLAIN):
        return None
    if isinstance(node, ast.Name):
        return "names starting with '_' are not columns" if node.id.startswith("_") else None
    if isinstance(node, ast.Constant):
        return None if isinstance(node.value, int | float | str | bool | None) else "constant"
    if isinstance(node, ast.BinOp | ast.UnaryOp | ast.Compare | ast.BoolOp):
        return _operation_problem(node)
    if isinstance(node, ast.Call):
        return _call_problem(node)
    if isinstance(node, ast.Attribute):
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("np", "numpy"):
            return None if node.attr in NUMPY_FUNCTIONS else f"calls numpy.{node.attr}"
        return "attribute access is not allowed in a formula"
    return f"{type(node).__name__} is not allowed in a formula"


def _operation_problem(node: ast.AST) -> str | None:
    if isinstance(node, ast.BinOp):
        operands = (node.left, node.right)
        if any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands):
            return "arithmetic on text is not allowed in a formula"
        if isinstance(node.op, ast.Pow):
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub):
                exponent = exponent.operand
            small = (
                isinstance(exponent, ast.Constant)
                and isinstance(exponent.value, int | float)
                and abs(exponent.value) <= _MAX_EXPONENT
            )
            return None if small else f"exponents must be numbers up to {_MAX_EXPONENT}"
    return None


def _call_problem(node: ast.Call) -> str | None:
    func = node.func
    if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
        keyword.arg is None for keyword in node.keywords
    ):
        return "*args and **kwargs are not allowed in a formula"
    if isinstance(func, ast.Name):
        return None if func.id in FORMULA_FUNCTIONS else f"calls {func.id!r}"
    if isinstance(func, ast.Attribute):
        return None  # checked as an Attribute node: only np.<maths>
    return "only named functions may be called in a formula"


def check_statsmodels_state(owner: str, state: Any) -> None:
    """Check the formulas in a statsmodels object's pickled state before it is applied."""
    if isinstance(state, tuple) and len(state) == 2:
        for part in state:
            check_statsmodels_state(owner, part)
        return
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if key in _SPEC_KEYS and isinstance(value, str):
            raise RefusedError(
                f"{owner}.{key}", "a text model spec would be evaluated as a formula"
            )
        if key == "formula" or key.endswith("_formula"):
            for text in _texts(f"{owner}.{key}", value):
                check_formula(text)


def _texts(where: str, value: Any) -> Iterable[str]:
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(where, item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(where, item)
    else:
        raise RefusedError(where, f"a formula must be text, not {type(value).__name__}")
