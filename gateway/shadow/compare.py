"""How a primary and a shadow version's predictions are compared, decided once per pair.

Outputs are matched by position when both versions have one output (a candidate may rename
it), else by name. A pair of numeric outputs (the primary's declared type double or float,
the shadow's any number type) is compared by absolute and relative difference; any other pair
of equal declared types (strings, integers, booleans: labels and classes) by agreement.
Inputs: a shadow with the primary's exact input signature gets the primary's decoded batch
as it is; otherwise its inputs are rebuilt by name and validated with its own schema.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from gateway.schema.request_schema import InputBatch, RequestSchema
from registry_sync.package.manifest import ColumnSpec

__all__ = ["Comparator", "Differences", "OutputMismatchError"]

_FLOAT = frozenset({"double", "float"})
_NUMBER = frozenset({"double", "float", "long", "integer"})
_INT = frozenset({"long", "integer"})


class OutputMismatchError(ValueError):
    """The two versions have no output that can be compared."""


class Differences(NamedTuple):
    abs_diff: list[float]
    rel_diff: list[float]
    labels_compared: int
    labels_agreed: int


class Comparator:
    """Built once per (primary version, shadow version): input adapter and output matching."""

    def __init__(self, primary: RequestSchema, shadow: RequestSchema) -> None:
        self.same_inputs = primary.inputs == shadow.inputs
        self._shadow = shadow
        self._primary_outputs = primary.outputs
        single = len(primary.outputs) == 1 and len(shadow.outputs) == 1
        pairs: list[tuple[ColumnSpec, ColumnSpec]]
        if single:
            pairs = [(primary.outputs[0], shadow.outputs[0])]
        else:
            theirs = {c.name: c for c in shadow.outputs}
            pairs = [(c, theirs[c.name]) for c in primary.outputs if c.name in theirs]
        # (primary key, shadow key, numeric); key None means "the value itself" (one output)
        self._plan: list[tuple[str | None, str | None, bool]] = []
        for p, s in pairs:
            numeric = p.type in _FLOAT and s.type in _NUMBER
            if numeric or p.type == s.type:
                pkey = None if len(primary.outputs) == 1 else p.name
                skey = None if len(shadow.outputs) == 1 else s.name
                self._plan.append((pkey, skey, numeric))
        self.comparable = bool(self._plan)

    def inputs(self, batch: InputBatch) -> InputBatch:
        """The shadow's input batch; raises GatewayError when the primary's inputs do not fit."""
        if self.same_inputs:
            return batch
        columns = batch.column_map()
        body: dict[str, list[Any]] = {}
        for spec in self._shadow.inputs:
            if spec.name in columns:
                values = columns[spec.name].tolist()
                if spec.type in _INT:  # a numeric batch holds integers as float64
                    values = [
                        int(v) if isinstance(v, float) and v.is_integer() else v for v in values
                    ]
                body[spec.name] = values
        return self._shadow.decode(msgspec.json.encode({"inputs": body}))

    def compare(self, primary: list[Any], shadow: list[Any]) -> Differences:
        # Plain Python: the lists hold the few values of one request, where numpy's per-call
        # overhead (~1 µs an operation) would cost more than the arithmetic.
        if not self.comparable:
            raise OutputMismatchError("no output of the shadow version matches the primary's")
        abs_diff: list[float] = []
        rel_diff: list[float] = []
        compared = agreed = 0
        for pkey, skey, numeric in self._plan:
            pv = primary if pkey is None else [row[pkey] for row in primary]
            sv = shadow if skey is None else [row[skey] for row in shadow]
            if len(pv) != len(sv):
                raise ValueError(f"{len(sv)} shadow predictions for {len(pv)} primary ones")
            if numeric:
                for p, s in zip(pv, sv, strict=True):
                    diff = abs(s - p)
                    scale = max(abs(p), abs(s))
                    abs_diff.append(diff)
                    rel_diff.append(diff / scale if scale > 0 else 0.0)
            else:
                compared += len(pv)
                agreed += sum(a == b for a, b in zip(pv, sv, strict=True))
        return Differences(abs_diff, rel_diff, compared, agreed)
