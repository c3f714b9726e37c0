"""Unpickle a model file with nothing but the allowlist's globals, calls and state updates.

`find_class` alone (the recipe in Python's pickle docs) decides which globals a file may
name, but not what is done with them: a pickle may also *call* an allowed class with its own
arguments, set attributes on an allowed class or module (changing every other model in the
process), or hand a statsmodels object a formula that statsmodels evaluates as Python while it
unpickles. So this is the pure-Python unpickler (`pickle._Unpickler`, ~3x slower than the C
one: ~2 ms for a 60-tree boosting model, paid once per load) with those opcodes checked too:

* REDUCE / INST / OBJ (a call): functions and ufuncs the policy resolved, and classes that
  define their own `__reduce__` (they are rebuilt by a call by design: numpy dtypes, Cython
  types). A plain Python class is rebuilt with `__new__` and its state, never by calling it, so
  calling one (and running its `__init__` on the file's arguments) is refused.
* copyreg._reconstructor: its base must be a plain builtin type (it calls `base.__init__`).
* BUILD (state): only onto instances, never onto a class, module or function; state that
  statsmodels evaluates (formulas) is checked first (formula.py).
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import io
import pickle
import types
from typing import Any, ClassVar

from registry_sync.runtimes.safe_load.formula import check_statsmodels_state
from registry_sync.runtimes.safe_load.policy import (
    LoadPolicy,
    RefusedError,
    is_ufunc,
    resolve_global,
)
from registry_sync.runtimes.safe_load.trees import check_trees

__all__ = ["restricted_loads"]

_SAFE_BASES = (object, int, float, complex, str, bytes, bytearray, list, dict, set, frozenset)
_NOT_INSTANCES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _rebuilt_by_call(cls: type) -> bool:
    """A class whose instances pickle as a call to something (their own `__reduce__`)."""
    return (
        getattr(cls, "__reduce_ex__", None) is not object.__reduce_ex__
        or getattr(cls, "__reduce__", None) is not object.__reduce__
    )


class _RestrictedUnpickler(pickle._Unpickler):
    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, policy: LoadPolicy) -> None:
        super().__init__(io.BytesIO(data))
        self._policy = policy
        self._extra_ids: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # type: ignore[attr-defined]
            # Protocols 0-2 name Python 2's modules (copy_reg, __builtin__), as pickle's own
            # find_class maps them.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = resolve_global(module, name, self._policy)
        if self._policy.is_extra(module, name):
            self._extra_ids.add(id(found))
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedError("a persistent id", "model files must be self-contained")

    def _check_call(self, func: Any, args: Any) -> None:
        if id(func) in self._extra_ids:
            return
        if func is copyreg._reconstructor:  # type: ignore[attr-defined]
            base = args[1] if isinstance(args, tuple) and len(args) > 1 else None
            if base not in _SAFE_BASES:
                raise RefusedError("copyreg._reconstructor", f"base {_name(base)} is not plain")
            return
        if isinstance(func, type) and not _rebuilt_by_call(func):
            raise RefusedError(
                _name(func), "a plain class is rebuilt from its state, never called with arguments"
            )

    def _load_reduce(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        func = stack[-1]
        self._check_call(func, args)
        stack[-1] = func(*args)

    def _instantiate(self, klass: Any, args: Any) -> None:
        self._check_call(klass, tuple(args))
        super()._instantiate(klass, args)  # type: ignore[misc]

    def _load_build(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        state, inst = stack[-1], stack[-2]
        if isinstance(inst, _NOT_INSTANCES) or is_ufunc(inst):
            raise RefusedError(_name(inst), "state may only be set on an instance")
        if type(inst).__module__.split(".")[0] == "statsmodels":
            check_statsmodels_state(_name(type(inst)), state)
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.BUILD[0]] = _load_build


def restricted_loads(data: bytes, policy: LoadPolicy | None = None) -> Any:
    """Unpickle `data` under `policy` (the allowlist by default); RefusedError names what a
    file tried to use, before it was imported or called."""
    policy = policy or LoadPolicy()
    if policy.unrestricted:
        return pickle.loads(data)
    model = _RestrictedUnpickler(data, policy).load()
    check_trees(model)  # node indices sklearn follows unchecked (trees.py)
    return model
