"""Comparing a primary and a shadow version: inputs adapted by name, outputs matched."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import InputValidationError
from gateway.schema.request_schema import RequestSchema
from gateway.shadow.compare import Comparator, OutputMismatchError
from registry_sync.package.manifest import ColumnSpec, Signature


def _schema(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> RequestSchema:
    return RequestSchema(
        Signature(
            inputs=[ColumnSpec(name=n, type=t) for n, t in inputs],  # type: ignore[arg-type]
            outputs=[ColumnSpec(name=n, type=t) for n, t in outputs],  # type: ignore[arg-type]
        )
    )


NUMBERS = [("hp", "double"), ("wt", "double")]
ONE = [("mpg", "double")]


def test_the_same_input_signature_reuses_the_primary_batch() -> None:
    primary = _schema(NUMBERS, ONE)
    batch = primary.decode(b'{"inputs": [{"hp": 1, "wt": 2}]}')
    comparator = Comparator(primary, _schema(NUMBERS, [("prediction", "double")]))
    assert comparator.same_inputs
    assert comparator.inputs(batch) is batch


def test_a_shadow_with_other_inputs_gets_them_by_name_and_validated() -> None:
    primary = _schema([("hp", "double"), ("cyl", "long"), ("wt", "double")], ONE)
    batch = primary.decode(b'{"inputs": [{"hp": 110, "cyl": 6, "wt": 2.6}]}')
    shadow = _schema([("cyl", "long"), ("hp", "double")], ONE)
    adapted = Comparator(primary, shadow).inputs(batch)
    assert adapted.names == ("cyl", "hp")
    assert msgspec.json.decode(adapted.canonical_json()) == {"cyl": [6.0], "hp": [110.0]}
    needs_more = _schema([("hp", "double"), ("gear", "long")], ONE)
    with pytest.raises(InputValidationError):
        Comparator(primary, needs_more).inputs(batch)


def test_numbers_are_compared_by_absolute_and_relative_difference() -> None:
    comparator = Comparator(_schema(NUMBERS, ONE), _schema(NUMBERS, [("prediction", "float")]))
    diffs = comparator.compare([10.0, 0.0, -2.0], [11.0, 0.0, 2.0])
    assert diffs.abs_diff == [1.0, 0.0, 4.0]
    assert diffs.rel_diff == pytest.approx([1 / 11, 0.0, 2.0])
    assert (diffs.labels_compared, diffs.labels_agreed) == (0, 0)


def test_labels_are_compared_by_agreement_and_outputs_by_name() -> None:
    outputs = [("label", "string"), ("score", "double")]
    comparator = Comparator(_schema(NUMBERS, outputs), _schema(NUMBERS, outputs[::-1]))
    primary = [{"label": "a", "score": 0.5}, {"label": "b", "score": 0.25}]
    shadow = [{"score": 0.75, "label": "a"}, {"score": 0.25, "label": "c"}]
    diffs = comparator.compare(primary, shadow)
    assert (diffs.labels_compared, diffs.labels_agreed) == (2, 1)
    assert diffs.abs_diff == [0.25, 0.0]


def test_versions_without_a_comparable_output_are_a_mismatch() -> None:
    comparator = Comparator(
        _schema(NUMBERS, [("a", "double"), ("b", "double")]),
        _schema(NUMBERS, [("c", "double"), ("d", "double")]),
    )
    assert not comparator.comparable
    with pytest.raises(OutputMismatchError):
        comparator.compare([{"a": 1.0, "b": 2.0}], [{"c": 1.0, "d": 2.0}])
    strings = Comparator(_schema(NUMBERS, ONE), _schema(NUMBERS, [("mpg", "string")]))
    assert not strings.comparable
    same = Comparator(_schema(NUMBERS, ONE), _schema(NUMBERS, ONE))
    assert same.compare([1.0], [1.0]).abs_diff == [0.0]
