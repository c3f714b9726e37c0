"""Saving packages from live objects: round trips, determinism, and the ONNX parity check."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from registry_sync.errors import ManifestError, OnnxParityError, PackageError
from registry_sync.package.manifest import ColumnSpec, ModelCard, Signature
from registry_sync.package.onnx_convert import check_parity, convert_sklearn_model
from registry_sync.package.read import read_package
from registry_sync.package.save import (
    onnx_package_from_sklearn,
    save_onnx,
    save_sklearn,
    save_statsmodels,
)
from registry_sync.runtimes import load_predictor
from tests.models import (
    train_cost_predictor_statsmodels,
    train_sklearn_classifier,
    train_sklearn_gbr,
    train_sklearn_linear,
)


def columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in frame.columns}


def test_seed_article_coefficients_are_reproduced_from_mtcars() -> None:
    results = train_cost_predictor_statsmodels()
    params = results.params.round(4).to_dict()
    assert params == {
        "C(cyl)[4]": 35.8460,
        "C(cyl)[6]": 32.4870,
        "C(cyl)[8]": 32.6601,
        "hp": -0.0231,
        "wt": -3.1814,
    }
    assert round(results.rsquared, 3) == 0.857
    assert results.nobs == 32


def test_sklearn_round_trip_predicts_like_the_live_model(tmp_path: Path) -> None:
    model, features = train_sklearn_linear()
    saved = save_sklearn(model, tmp_path / "pkg", example=features, name="lin")
    package = read_package(saved.path)
    predictor = load_predictor(package)
    assert predictor.engine == "sklearn"
    expected = model.predict(features)
    # Same coefficients, different memory order: the runtime stacks columns C-ordered while
    # `model.predict(DataFrame)` hands BLAS an F-ordered array, and OpenBLAS picks its dot
    # kernel per CPU (DYNAMIC_ARCH), summing in another order. Seen on an AMD EPYC: 11 of 32
    # values off by up to 3.6e-15 (1-2 ULP of values near 20). rtol 1e-12 is ~4,500 ULP:
    # far above rounding, far below any real difference between two models.
    np.testing.assert_allclose(
        predictor.predict_columns(columns_of(features)), expected, rtol=1e-12, atol=0
    )
    np.testing.assert_allclose(
        predictor.predict_matrix(features.to_numpy()), expected, rtol=1e-12, atol=0
    )
    assert package.manifest.libraries.keys() == {"python", "numpy", "pandas", "sklearn", "skops"}


def test_statsmodels_round_trip_records_the_formula(tmp_path: Path, mtcars_frame) -> None:
    results = train_cost_predictor_statsmodels()
    saved = save_statsmodels(results, tmp_path / "pkg", example=mtcars_frame, name="cost")
    manifest = read_package(saved.path).manifest
    assert manifest.format == "statsmodels"
    assert manifest.formula == "mpg ~ hp + C(cyl) + wt - 1"
    # Only the formula's variables become inputs, even from the whole training frame.
    assert [spec.name for spec in manifest.signature.inputs] == ["cyl", "hp", "wt"]
    assert manifest.signature.inputs[0].categories == [4, 6, 8]
    predictor = load_predictor(saved)
    got = predictor.predict_columns(columns_of(mtcars_frame[["hp", "wt", "cyl"]]))
    np.testing.assert_allclose(got, results.predict(mtcars_frame).to_numpy(), rtol=0, atol=1e-12)


def test_onnx_package_round_trip_matches_the_sklearn_model(tmp_path: Path) -> None:
    model, features = train_sklearn_linear()
    saved = onnx_package_from_sklearn(model, tmp_path / "pkg", example=features, name="lin")
    assert saved.manifest.format == "onnx"
    assert [f.path for f in saved.manifest.files] == ["model.onnx"]
    predictor = load_predictor(read_package(saved.path))
    assert predictor.engine == "onnx"
    got = predictor.predict_matrix(features.to_numpy())
    np.testing.assert_allclose(got, model.predict(features), rtol=0, atol=1e-9)


def test_save_onnx_accepts_a_model_proto_or_a_file(tmp_path: Path) -> None:
    import onnx

    model, features = train_sklearn_linear(2)
    onnx_bytes = convert_sklearn_model(model, 2)
    (tmp_path / "m.onnx").write_bytes(onnx_bytes)
    from_proto = save_onnx(
        onnx.load_model_from_string(onnx_bytes), tmp_path / "a", example=features, name="m"
    )
    from_file = save_onnx(tmp_path / "m.onnx", tmp_path / "b", example=features, name="m")
    assert from_proto.manifest == from_file.manifest
    got = load_predictor(from_file).predict_matrix(features.to_numpy())
    np.testing.assert_allclose(got, model.predict(features), atol=1e-9)


def test_save_onnx_refuses_a_model_that_does_not_run_on_the_example(tmp_path: Path) -> None:
    model, features = train_sklearn_linear(2)
    wrong_width = features.assign(extra=1.0)
    with pytest.raises(PackageError, match="does not run on the example"):
        save_onnx(convert_sklearn_model(model, 2), tmp_path / "x", example=wrong_width, name="m")
    assert not (tmp_path / "x").exists()


def test_export_onnx_records_a_verified_export_beside_the_pickle(tmp_path: Path) -> None:
    model, features = train_sklearn_linear()
    saved = save_sklearn(model, tmp_path / "pkg", example=features, name="lin", export_onnx=True)
    export = saved.manifest.onnx_export
    assert export is not None
    assert export.path == "model.onnx"
    assert export.max_abs_diff < 1e-9  # double precision for a linear model
    assert export.opset > 0
    assert {"onnx", "onnxruntime", "skl2onnx"} <= saved.manifest.libraries.keys()
    assert load_predictor(saved).engine == "onnx"
    assert load_predictor(saved, prefer_onnx=False).engine == "sklearn"


def test_tree_models_fall_back_to_float_and_stay_within_tolerance(tmp_path: Path) -> None:
    model, features = train_sklearn_gbr()
    saved = save_sklearn(model, tmp_path / "pkg", example=features, name="gbr", export_onnx=True)
    assert saved.manifest.onnx_export is not None
    assert 0 < saved.manifest.onnx_export.max_abs_diff <= 1e-4
    got = load_predictor(saved).predict_matrix(features.to_numpy())
    np.testing.assert_allclose(got, model.predict(features), atol=1e-4)
    assert got.dtype == np.float64  # the signature says double, as sklearn answers


def test_parity_failure_with_zero_tolerance_on_a_float_export(tmp_path: Path) -> None:
    model, features = train_sklearn_linear()
    with pytest.raises(OnnxParityError) as caught:
        save_sklearn(
            model,
            tmp_path / "pkg",
            example=features,
            name="lin",
            export_onnx=True,
            onnx_tolerance=0.0,
            onnx_dtype="float",
        )
    assert caught.value.max_abs_diff > 0
    assert "differs from the model on the input example" in str(caught.value)
    assert not (tmp_path / "pkg").exists()


def test_parity_check_catches_an_export_of_a_different_model() -> None:
    model, features = train_sklearn_linear()
    other, _ = train_sklearn_linear(offset=5.0)
    wrong = convert_sklearn_model(other, 4)
    with pytest.raises(OnnxParityError) as caught:
        check_parity(wrong, features.to_numpy(), model.predict(features), tolerance=1e-4, where="x")
    assert caught.value.max_abs_diff == pytest.approx(5.0)


def test_classifier_labels_round_trip_through_sklearn_and_onnx(tmp_path: Path) -> None:
    model, features = train_sklearn_classifier()
    saved = save_sklearn(
        model, tmp_path / "pkg", example=features, name="gearbox", export_onnx=True
    )
    assert saved.manifest.signature.outputs[0].type == "string"
    assert saved.manifest.onnx_export is not None
    assert saved.manifest.onnx_export.max_abs_diff == 0.0
    for prefer_onnx in (True, False):
        got = load_predictor(saved, prefer_onnx=prefer_onnx).predict_matrix(features.to_numpy())
        assert got.tolist() == model.predict(features).tolist()


def test_onnx_export_needs_numeric_inputs(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"city": ["a", "b", "a", "c"], "x": [1.0, 2.0, 3.0, 4.0]})
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
        LinearRegression(),
    ).fit(frame, [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(PackageError, match="ONNX export needs numeric inputs; not: city"):
        save_sklearn(pipe, tmp_path / "p", example=frame, name="p", export_onnx=True)
    # Without the export, the pipeline saves and serves from its string column.
    saved = save_sklearn(pipe, tmp_path / "p", example=frame, name="p")
    got = load_predictor(saved).predict_columns(
        {"city": np.array(["c"], dtype=object), "x": np.array([4.0])}
    )
    np.testing.assert_allclose(got, pipe.predict(frame.tail(1)))


def test_same_model_saved_twice_gives_identical_model_yaml(tmp_path: Path) -> None:
    # Pickle: a skops archive names its arrays by object id, so its bytes differ per save.
    model, features = train_sklearn_linear()
    for folder in ("a", "b"):
        save_sklearn(
            model,
            tmp_path / folder,
            example=features,
            name="lin",
            metrics={"rmse": 2.5, "r2": 0.8},
            labels=["b", "a"],
            export_onnx=True,
            serialization="pickle",
        )
    first = (tmp_path / "a" / "model.yaml").read_bytes()
    assert first == (tmp_path / "b" / "model.yaml").read_bytes()
    assert read_package(tmp_path / "a").digest == read_package(tmp_path / "b").digest


def test_statsmodels_saved_twice_gives_identical_model_yaml(tmp_path: Path, mtcars_frame) -> None:
    results = train_cost_predictor_statsmodels()
    for folder in ("a", "b"):
        save_statsmodels(results, tmp_path / folder, example=mtcars_frame, name="cost")
    assert (tmp_path / "a" / "model.yaml").read_bytes() == (
        tmp_path / "b" / "model.yaml"
    ).read_bytes()


def test_saving_again_replaces_the_package_atomically(tmp_path: Path) -> None:
    first, features = train_sklearn_linear()
    second, _ = train_sklearn_linear(offset=3.0)
    save_sklearn(first, tmp_path / "pkg", example=features, name="lin", export_onnx=True)
    saved = save_sklearn(second, tmp_path / "pkg", example=features, name="lin")
    assert sorted(p.name for p in saved.path.iterdir()) == ["model.skops", "model.yaml"]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]  # no temp folders left behind
    got = load_predictor(saved).predict_matrix(features.to_numpy())
    np.testing.assert_allclose(got, second.predict(features))


def test_saving_over_a_folder_that_is_not_a_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    model, features = train_sklearn_linear()
    with pytest.raises(PackageError, match=r"without model\.yaml"):
        save_sklearn(model, tmp_path / "notes", example=features, name="lin")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_manifest_carries_example_metrics_card_and_labels(tmp_path: Path, mtcars_frame) -> None:
    results = train_cost_predictor_statsmodels()
    card = {"description": "mpg from hp, wt, cyl", "owner": "fuel team"}
    saved = save_statsmodels(
        results,
        tmp_path / "pkg",
        example=mtcars_frame,
        name="cost",
        metrics={"r2": np.float64(results.rsquared)},
        card=card,
        labels=["mtcars", "cars"],
    )
    manifest = saved.manifest
    assert manifest.input_example[0] == {"cyl": 6, "hp": 110.0, "wt": 2.62}
    assert len(manifest.input_example) == 5
    assert all(type(row["cyl"]) is int for row in manifest.input_example)
    assert manifest.metrics == {"r2": pytest.approx(0.857, abs=5e-4)}
    assert manifest.card == ModelCard(description="mpg from hp, wt, cyl", owner="fuel team")
    assert manifest.labels == ["cars", "mtcars"]


def test_explicit_signature_is_used_and_checked_against_the_example(tmp_path: Path) -> None:
    model, features = train_sklearn_linear(2)
    explicit = Signature(
        inputs=[
            ColumnSpec(name="hp", type="double", description="gross horsepower"),
            ColumnSpec(name="wt", type="double", description="weight (1000 lbs)"),
        ],
        outputs=[ColumnSpec(name="mpg", type="double")],
    )
    saved = save_sklearn(model, tmp_path / "a", example=features, name="m", signature=explicit)
    # The package states its positional contract: the order of the inputs, written out.
    assert saved.manifest.signature == msgspec.structs.replace(
        explicit, positional_order=["hp", "wt"]
    )
    wrong = Signature(inputs=[ColumnSpec(name="hp", type="long")], outputs=explicit.outputs)
    with pytest.raises(ManifestError, match="does not fit the signature"):
        save_sklearn(model, tmp_path / "b", example=features, name="m", signature=wrong)
    assert not (tmp_path / "b").exists()
