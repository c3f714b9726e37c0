"""Signatures from example data, and the input changes that would break a stage's clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from registry_sync.package.manifest import ColumnSpec, ColumnType, Signature

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "breaking_changes",
    "column_type",
    "infer_inputs",
    "infer_outputs",
    "infer_signature",
    "to_python",
]

# Retypings a client cannot notice: every value valid for the old type is valid for the new one
# (JSON numbers do not distinguish 2 from 2.0, so an integer input accepts what a long input did
# and a double accepts every integer). Narrowing (double -> long) or changing kind is breaking.
_WIDENINGS: frozenset[tuple[str, str]] = frozenset(
    {
        ("integer", "long"),
        ("integer", "float"),
        ("integer", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
    }
)


def column_type(dtype: Any) -> ColumnType:
    """The signature type of a numpy or pandas dtype (category dtypes give their elements')."""
    import pandas as pd  # here, not at the top: serving never infers signatures (see columns.py)

    if isinstance(dtype, pd.CategoricalDtype):
        return column_type(dtype.categories.dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "float" if np.dtype(dtype) == np.float32 else "double"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "string"
    raise TypeError(f"no signature type for dtype {dtype} (numbers, booleans, strings only)")


def to_python(value: Any) -> Any:
    """A JSON-safe Python scalar for a numpy/pandas scalar (np.int64(4) -> 4)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def infer_inputs(example: pd.DataFrame) -> list[ColumnSpec]:
    """One required input per column, in column order; category columns list their categories."""
    import pandas as pd

    specs = []
    for name in example.columns:
        dtype = example[name].dtype
        categories = None
        if isinstance(dtype, pd.CategoricalDtype):
            categories = [to_python(value) for value in dtype.categories]
        specs.append(ColumnSpec(name=str(name), type=column_type(dtype), categories=categories))
    return specs


def infer_outputs(prediction: Any, names: Sequence[str] | None = None) -> list[ColumnSpec]:
    """Outputs from a model's prediction on the example: `prediction` for one column."""
    import pandas as pd

    if isinstance(prediction, pd.DataFrame):
        columns = [str(c) for c in prediction.columns]
        types = [column_type(prediction[c].dtype) for c in prediction.columns]
    else:
        array = np.asarray(prediction)
        width = 1 if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1) else None
        if width is None:
            if array.ndim != 2:
                raise TypeError(f"a prediction of shape {array.shape} has no column signature")
            width = array.shape[1]
        columns = ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]
        types = [column_type(array.dtype)] * width
    if names is not None:
        if len(names) != len(columns):
            raise ValueError(f"{len(names)} output names for {len(columns)} output columns")
        columns = list(names)
    return [ColumnSpec(name=n, type=t) for n, t in zip(columns, types, strict=True)]


def infer_signature(
    example: pd.DataFrame, prediction: Any, output_names: Sequence[str] | None = None
) -> Signature:
    return Signature(inputs=infer_inputs(example), outputs=infer_outputs(prediction, output_names))


def breaking_changes(old: Signature, new: Signature) -> list[str]:
    """The input changes between two versions that would break clients written for `old`."""
    problems: list[str] = []
    new_inputs = {spec.name: spec for spec in new.inputs}
    old_names = {spec.name for spec in old.inputs}
    for before in old.inputs:
        after = new_inputs.get(before.name)
        if after is None:
            problems.append(f"input {before.name!r} removed")
            continue
        if after.type != before.type and (before.type, after.type) not in _WIDENINGS:
            problems.append(f"input {before.name!r} retyped from {before.type} to {after.type}")
        if after.required and not before.required:
            problems.append(f"input {before.name!r} became required")
        problems.extend(_category_problems(before, after))
    for after in new.inputs:
        if after.name not in old_names and after.required:
            problems.append(f"input {after.name!r} added as required")
    problems.extend(_positional_problems(old, new))
    return problems


def _positional_problems(old: Signature, new: Signature) -> list[str]:
    """A positional request (V2 [rows, k] tensor, list of lists) must keep its meaning: the
    order may only grow at the end, by optional inputs (rows may leave those out). Removed
    inputs and new required ones are reported by `breaking_changes` itself."""
    before, after = old.positional(), new.positional()
    optional = {spec.name for spec in new.inputs if not spec.required}
    if after[: len(before)] == before and all(name in optional for name in after[len(before) :]):
        return []
    kept_before = [name for name in before if name in after]
    kept_after = [name for name in after if name in before]
    if kept_before != kept_after:
        return [
            f"positional input order changed from [{', '.join(before)}] to "
            f"[{', '.join(after)}] (a [rows, k] tensor or a list of lists would be read "
            "differently)"
        ]
    problems = []
    still_inputs = {spec.name for spec in new.inputs}
    dropped = [name for name in before if name not in after and name in still_inputs]
    if dropped:
        problems.append(f"input {', '.join(map(repr, dropped))} left out of the positional order")
    last_kept = max((j for j, name in enumerate(after) if name in before), default=-1)
    inserted = [name for name in after[:last_kept] if name not in before]
    if inserted:
        problems.append(
            f"input {', '.join(map(repr, inserted))} inserted into the positional order "
            "before existing inputs"
        )
    return problems


def _category_problems(before: ColumnSpec, after: ColumnSpec) -> list[str]:
    if after.categories is None:
        return []
    if before.categories is None:
        return [f"input {before.name!r} now restricted to categories {after.categories}"]
    # Compare as the values clients send: 6 and 6.0 are the same category in JSON.
    kept = {_category_key(value) for value in after.categories}
    removed = [value for value in before.categories if _category_key(value) not in kept]
    if not removed:
        return []
    noun = "category" if len(removed) == 1 else "categories"
    listed = ", ".join(repr(value) for value in removed)
    return [f"input {before.name!r} {noun} {listed} removed"]


def _category_key(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return cast(object, value)
