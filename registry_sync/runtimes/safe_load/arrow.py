"""The pyarrow reconstructors a model file may call: rebuild arrays and types, nothing else.

With pyarrow installed, pandas 3 keeps strings (column names too) in pyarrow arrays, so a
statsmodels model logged by MLflow (which brings pyarrow) pickles them: an array pickles as
`pyarrow.lib._restore_array((type, length, null_count, offset, buffers, children,
dictionary))`, its buffers as `py_buffer(bytes)` and its type as `type_for_alias("string")`
or a type factory. Those are allowed (`ARROW_FUNCTIONS`): each builds a value from plain data
and calls nothing the file names. Nothing else in pyarrow is (pyarrow is not an allowed
package): no file systems, IPC or CSV readers, compute functions, UDFs, extension types
(their reconstructor is a method of a class the file would choose), and no Table or
RecordBatch reconstructors (unused by pandas' arrays).

`_restore_array` trusts the lengths and offsets it is given, so a crafted array could claim
more elements than its buffers hold and make a later read run past them; every array (and
chunked array) a file rebuilds is therefore validated in full (`validate(full=True)`: buffer
sizes, offsets, UTF-8) before the unpickler hands it on. pyarrow itself is optional: without
it such a file fails to load, saying so (`pip install 'stageserve[arrow]'`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from registry_sync.runtimes.safe_load.policy import RefusedError

__all__ = ["ARROW_FUNCTIONS", "arrow_reconstructor"]

_MODULE = "pyarrow.lib"
# Reconstructors whose result is validated before it is used (they take lengths on trust).
_VALIDATED = frozenset({"_restore_array", "chunked_array"})
# Build a DataType, Field, Schema or Buffer from plain values (pyarrow's own __reduce__ of
# each, types.pxi / io.pxi): no callable argument, no I/O.
_TYPE_BUILDERS = frozenset(
    {"py_buffer", "type_for_alias", "field", "schema", "KeyValueMetadata"}
    | {"list_", "large_list", "list_view", "large_list_view", "map_", "struct", "dictionary"}
    | {"timestamp", "binary", "decimal32", "decimal64", "decimal128", "decimal256"}
    | {"run_end_encoded"}
)
ARROW_FUNCTIONS: frozenset[tuple[str, str]] = frozenset(
    (_MODULE, name) for name in _VALIDATED | _TYPE_BUILDERS
)


def arrow_reconstructor(name: str) -> Any:
    """The reconstructor `pyarrow.lib.<name>` (one of ARROW_FUNCTIONS), validating what it
    builds when it takes lengths on trust."""
    try:
        found = getattr(importlib.import_module(_MODULE), name)
    except ImportError:
        raise RefusedError(
            f"{_MODULE}.{name}",
            "the file holds pyarrow arrays (pandas' strings when pyarrow is installed) and "
            "pyarrow is not installed here: pip install 'stageserve[arrow]'",
        ) from None
    if name not in _VALIDATED:
        return found
    return _validating(found, f"{_MODULE}.{name}")


def _validating(build: Callable[..., Any], subject: str) -> Callable[..., Any]:
    def rebuild(*args: Any) -> Any:
        built = build(*args)
        try:
            built.validate(full=True)
        except Exception as exc:  # pyarrow.lib.ArrowInvalid (and kin)
            raise RefusedError(subject, f"the array it rebuilds is invalid: {exc}") from None
        return built

    rebuild.__qualname__ = build.__name__
    return rebuild
