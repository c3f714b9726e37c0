"""Signature inference from example frames, and which input changes break a stage's clients."""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd
import pytest

from registry_sync.package.manifest import ColumnSpec, Signature
from registry_sync.package.signature import (
    breaking_changes,
    column_type,
    infer_inputs,
    infer_outputs,
    infer_signature,
)
from tests.models import train_sklearn_classifier, train_sklearn_linear


def test_each_dtype_maps_to_its_signature_type() -> None:
    frame = pd.DataFrame(
        {
            "price": [1.5, 2.5],
            "small": np.array([1.5, 2.5], dtype=np.float32),
            "count": [1, 2],
            "flag": [True, False],
            "city": ["Oslo", "Lima"],
            "text": pd.array(["a", "b"], dtype="string"),
        }
    )
    specs = infer_inputs(frame)
    assert [(s.name, s.type) for s in specs] == [
        ("price", "double"),
        ("small", "float"),
        ("count", "long"),
        ("flag", "boolean"),
        ("city", "string"),
        ("text", "string"),
    ]
    assert all(s.required and s.categories is None for s in specs)


def test_category_columns_take_their_categories_element_type(mtcars_frame: pd.DataFrame) -> None:
    (cyl,) = infer_inputs(mtcars_frame[["cyl"]])
    assert cyl == ColumnSpec(name="cyl", type="long", categories=[4, 6, 8])
    assert all(type(value) is int for value in cyl.categories or [])
    colours = pd.DataFrame({"colour": pd.Categorical(["red", "blue"])})
    assert infer_inputs(colours)[0].categories == ["blue", "red"]
    assert infer_inputs(colours)[0].type == "string"


def test_unsupported_dtypes_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="datetime"):
        column_type(pd.Series(pd.to_datetime(["2024-01-01"])).dtype)


def test_regressor_output_is_one_double_named_prediction() -> None:
    model, features = train_sklearn_linear(2)
    signature = infer_signature(features, model.predict(features))
    assert [(s.name, s.type) for s in signature.inputs] == [("hp", "double"), ("wt", "double")]
    assert signature.outputs == [ColumnSpec(name="prediction", type="double")]


def test_classifier_output_type_is_the_label_type() -> None:
    model, features = train_sklearn_classifier()
    assert infer_outputs(model.predict(features)) == [ColumnSpec(name="prediction", type="string")]
    assert infer_outputs(np.array([0, 1, 1])) == [ColumnSpec(name="prediction", type="long")]


def test_several_outputs_are_numbered_or_named() -> None:
    two = np.zeros((3, 2))
    assert [s.name for s in infer_outputs(two)] == ["prediction_0", "prediction_1"]
    assert [s.name for s in infer_outputs(two, ["low", "high"])] == ["low", "high"]
    assert [s.name for s in infer_outputs(np.zeros((3, 1)))] == ["prediction"]
    with pytest.raises(ValueError, match="1 output names for 2"):
        infer_outputs(two, ["only"])


def spec(name: str, kind: str = "double", **extra: object) -> ColumnSpec:
    return ColumnSpec(name=name, type=kind, **extra)  # type: ignore[arg-type]


def sig(*inputs: ColumnSpec) -> Signature:
    return Signature(inputs=list(inputs), outputs=[spec("prediction")])


BASE = sig(spec("hp"), spec("wt"), spec("cyl", "long", categories=[4, 6, 8]))


def test_identical_signatures_break_nothing() -> None:
    assert breaking_changes(BASE, BASE) == []


def test_removed_input_breaks_clients() -> None:
    new = sig(spec("hp"), spec("cyl", "long", categories=[4, 6, 8]))
    assert breaking_changes(BASE, new) == ["input 'wt' removed"]


def test_input_added_as_required_breaks_but_optional_does_not() -> None:
    assert breaking_changes(BASE, sig(*BASE.inputs, spec("age"))) == [
        "input 'age' added as required"
    ]
    assert breaking_changes(BASE, sig(*BASE.inputs, spec("age", required=False))) == []


def test_retyped_input_breaks_clients() -> None:
    new = sig(spec("hp", "string"), spec("wt"), spec("cyl", "long", categories=[4, 6, 8]))
    assert breaking_changes(BASE, new) == ["input 'hp' retyped from double to string"]


def test_widening_long_to_double_is_not_breaking_but_narrowing_is() -> None:
    old = sig(spec("n", "long"))
    assert breaking_changes(old, sig(spec("n", "double"))) == []
    assert breaking_changes(sig(spec("n", "integer")), sig(spec("n", "long"))) == []
    assert breaking_changes(sig(spec("n", "double")), old) == [
        "input 'n' retyped from double to long"
    ]


def test_removed_category_breaks_clients_and_added_category_does_not() -> None:
    fewer = sig(spec("hp"), spec("wt"), spec("cyl", "long", categories=[4, 6]))
    more = sig(spec("hp"), spec("wt"), spec("cyl", "long", categories=[4, 6, 8, 12]))
    assert breaking_changes(BASE, fewer) == ["input 'cyl' category 8 removed"]
    assert breaking_changes(BASE, more) == []


def test_restricting_a_free_input_to_categories_breaks_clients() -> None:
    old = sig(spec("city", "string"))
    new = sig(spec("city", "string", categories=["Oslo"]))
    assert breaking_changes(old, new) == ["input 'city' now restricted to categories ['Oslo']"]
    assert breaking_changes(new, old) == []


def test_optional_input_becoming_required_breaks_clients() -> None:
    old = sig(spec("hp", required=False))
    assert breaking_changes(old, sig(spec("hp"))) == ["input 'hp' became required"]


def test_every_problem_is_reported_together() -> None:
    new = sig(spec("hp", "string"), spec("age"))
    assert breaking_changes(BASE, new) == [
        "input 'hp' retyped from double to string",
        "input 'wt' removed",
        "input 'cyl' removed",
        "input 'age' added as required",
    ]


def test_reordered_inputs_break_positional_clients() -> None:
    # The swap: [hp, wt] then [wt, hp] with no declared order (old model.yaml files):
    # the default positional order is the inputs' order, so the swap moves it.
    old = sig(spec("hp"), spec("wt"))
    assert breaking_changes(old, sig(spec("wt"), spec("hp"))) == [
        "positional input order changed from [hp, wt] to [wt, hp] "
        "(a [rows, k] tensor or a list of lists would be read differently)"
    ]


def test_a_declared_positional_order_lets_a_version_list_its_inputs_in_any_order() -> None:
    old = sig(spec("hp"), spec("wt"))
    new = msgspec.structs.replace(sig(spec("wt"), spec("hp")), positional_order=["hp", "wt"])
    assert breaking_changes(old, new) == []
    assert new.positional() == ("hp", "wt")
    assert old.positional() == ("hp", "wt")


def test_positional_order_may_grow_at_the_end_only_by_optional_inputs() -> None:
    old = sig(spec("hp"), spec("wt"))
    appended = sig(spec("hp"), spec("wt"), spec("age", required=False))
    assert breaking_changes(old, appended) == []
    inserted = msgspec.structs.replace(appended, positional_order=["hp", "age", "wt"])
    assert breaking_changes(old, inserted) == [
        "input 'age' inserted into the positional order before existing inputs"
    ]
    optional = sig(spec("hp"), spec("wt", required=False))
    left_out = msgspec.structs.replace(optional, positional_order=["hp"])
    assert breaking_changes(optional, left_out) == ["input 'wt' left out of the positional order"]


def test_positional_problem_names_what_is_wrong_with_a_declared_order() -> None:
    base = sig(spec("hp"), spec("wt"), spec("age", required=False))
    assert msgspec.structs.replace(base, positional_order=["hp", "wt"]).positional_problem() is None
    cases = {
        ("hp", "wt", "x"): "names inputs the signature does not have: x",
        ("hp", "hp", "wt"): "names an input twice",
        ("hp", "age"): "leaves out required inputs: wt",
    }
    for order, problem in cases.items():
        declared = msgspec.structs.replace(base, positional_order=list(order))
        assert declared.positional_problem() == problem
