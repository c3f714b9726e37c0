"""The allowlist of what a model file may name, and the one check every loader applies to it.

A pickle (and a skops file) names the globals it is built from; unpickling imports them and
may call them with arguments the file chooses. Allowed by default:

* classes from the runtimes' own libraries (``ALLOWED_PACKAGES``: numpy, scipy, scikit-learn,
  statsmodels, pandas) and a few plain builtins, except modules that read or write files, open
  sockets or evaluate code (``DENIED_MODULES``) and classes whose unpickling runs code from the
  file (``DENIED_CLASSES``);
* pyarrow's array and type reconstructors (arrow.py: pandas keeps strings in pyarrow arrays
  when pyarrow is installed), validating every array they rebuild; nothing else of pyarrow;
* functions only where listed: the libraries' own pickle reconstructors (``FUNCTIONS``), Cython's
  generated ``__pyx_unpickle_*``, numpy/scipy ufuncs, and scikit-learn's top-level functions
  (score functions, validators) outside its denied modules. numpy, pandas and statsmodels
  functions are not allowed wholesale: ``numpy.load``, ``numpy.testing.runstring``,
  ``pandas.read_pickle`` or statsmodels' formula functions would each run or load code.

patsy is not allowed: it refuses to pickle its own objects, so a real model never names it,
and its factors are Python code. Anything else is refused before it is imported, naming the
global. ``LoadPolicy.extra`` widens this deliberately (a module prefix or one global).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import msgspec

__all__ = [
    "ALLOWED_PACKAGES",
    "DENIED_CLASSES",
    "DENIED_MODULES",
    "FUNCTIONS",
    "LoadPolicy",
    "RefusedError",
    "is_ufunc",
    "resolve_global",
]

ALLOWED_PACKAGES: tuple[str, ...] = ("numpy", "scipy", "sklearn", "statsmodels", "pandas")

# Modules of the allowed packages that do I/O, open listeners, download, change the process'
# configuration or evaluate code: nothing in them is ever loaded. Any module path with a
# `tests`, `testing` or `conftest` part is denied as well.
DENIED_MODULES: tuple[str, ...] = (
    "numpy.ctypeslib",
    "numpy.distutils",
    "numpy.f2py",
    "numpy.lib._datasource",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "numpy.lib.npyio",
    "numpy._pytesttester",
    "pandas._config",
    "pandas.core.computation",
    "pandas.core.config_init",
    "pandas.io",
    "pandas.plotting",
    "pandas.util",
    "scipy._lib._ccallback",
    "scipy._lib._testutils",
    "scipy.datasets",
    "scipy.io",
    "scipy.misc",
    "sklearn._build_utils",
    "sklearn._config",
    "sklearn.callback",
    "sklearn.datasets",
    "sklearn.experimental",
    "sklearn.externals",
    "sklearn.utils._joblib",
    "sklearn.utils._show_versions",
    "sklearn.utils._testing",
    "sklearn.utils.estimator_checks",
    "statsmodels.datasets",
    "statsmodels.formula",
    "statsmodels.graphics",
    "statsmodels.iolib",
    "statsmodels.sandbox",
    "statsmodels.tools.web",
)
_DENIED_PARTS = frozenset({"tests", "testing", "conftest", "_testing"})

# Classes (and their subclasses) whose construction or unpickling does what a model must not:
# a memmap opens (and may create or truncate) a file named by the pickle; scipy.stats
# distributions `exec` a template from their pickled state in __setstate__.
DENIED_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "memmap"),
        ("numpy", "DataSource"),
        ("numpy.lib._datasource", "DataSource"),
        ("scipy.stats._distn_infrastructure", "rv_generic"),
    }
)

# Functions a real pickle of these libraries calls to rebuild its objects (module, name).
FUNCTIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.internals.blocks", "new_block"),
    }
)

# Plain data types outside the packages that pickles of them use.
_BUILTIN_CLASSES: frozenset[tuple[str, str]] = frozenset(
    {("builtins", name) for name in ("bool", "bytearray", "bytes", "complex", "dict", "float")}
    | {("builtins", name) for name in ("frozenset", "int", "list", "object", "range", "set")}
    | {("builtins", name) for name in ("slice", "str", "tuple")}
    | {("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")}
    | {("datetime", name) for name in ("date", "datetime", "time", "timedelta", "timezone")}
    | {("decimal", "Decimal"), ("functools", "partial")}
)


class RefusedError(Exception):
    """A global (or formula, or path) a model file may not use; `subject` names it."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class LoadPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How far loading a model file is trusted. The default is the allowlist above."""

    extra: tuple[str, ...] = ()
    """More modules (prefix match: "mycompany.features") or single globals
    ("joblib.memory.Memory") a model file may name: classes, functions, anything in them."""
    unrestricted: bool = False
    """Plain `pickle.loads`: any code the file names runs. Only for a version whose origin is
    trusted (see `unpickle_trust_signed`); never the default."""

    def is_extra(self, module: str, name: str) -> bool:
        full = f"{module}.{name}"
        return any(
            full == entry or _within(module, entry) or _within(full, entry) for entry in self.extra
        )


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _denied_module(module: str) -> bool:
    if any(_within(module, denied) for denied in DENIED_MODULES):
        return True
    return any(part in _DENIED_PARTS for part in module.split("."))


def _allowed_package(module: str) -> bool:
    return any(_within(module, package) for package in ALLOWED_PACKAGES)


def _import(module: str, name: str) -> Any:
    try:
        imported = importlib.import_module(module)
        found: Any = imported
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise RefusedError(f"{module}.{name}", f"cannot be imported: {exc}") from None
    return found


def is_ufunc(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ufunc)


def resolve_global(module: str, name: str, policy: LoadPolicy) -> Any:
    """The object `module.name` names, if the policy allows it; else RefusedError naming it.

    Checked before anything is imported (only the allowed packages' modules ever are), then
    again on what the name resolves to: a re-export such as `statsmodels.api.load_pickle`
    resolves to a denied module's function and is refused.
    """
    subject = f"{module}.{name}"
    if policy.is_extra(module, name):
        return _import(module, name)
    if (module, name) in _BUILTIN_CLASSES or (module, name) in FUNCTIONS:
        return _import(module, name)
    if module == "pyarrow.lib":
        from registry_sync.runtimes.safe_load.arrow import ARROW_FUNCTIONS, arrow_reconstructor

        if (module, name) in ARROW_FUNCTIONS:
            return arrow_reconstructor(name)
    if not _allowed_package(module):
        raise RefusedError(subject, _outside_hint(module))
    if _denied_module(module):
        raise RefusedError(subject, "its module reads or writes files, or runs code")
    if name.startswith("__pyx_unpickle_") and "." not in name:
        return _import(module, name)  # Cython's generated reconstructor of its own class
    found = _import(module, name)
    if isinstance(found, type):
        _check_class(subject, found)
        return found
    if is_ufunc(found):
        return found
    if isinstance(found, types.FunctionType) and _within(module, "sklearn"):
        home = getattr(found, "__module__", "") or ""
        if _within(home, "sklearn") and not _denied_module(home) and found.__qualname__ == name:
            return found
    raise RefusedError(subject, "only classes and the libraries' own reconstructors may be named")


def _check_class(subject: str, cls: type) -> None:
    home = getattr(cls, "__module__", "") or ""
    if not _allowed_package(home) or _denied_module(home):
        raise RefusedError(subject, f"it is defined in {home!r}, outside the allowlist")
    for base in cls.__mro__:
        if (getattr(base, "__module__", ""), base.__qualname__) in DENIED_CLASSES:
            raise RefusedError(
                subject, f"{base.__module__}.{base.__qualname__} runs code or opens files"
            )


def _outside_hint(module: str) -> str:
    package = module.split(".", maxsplit=1)[0]
    allowed = ", ".join(ALLOWED_PACKAGES)
    return (
        f"{package!r} is not a library the runtimes load models from ({allowed}); "
        "to trust it, list it in the setting unpickle_allow"
    )
