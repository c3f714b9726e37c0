"""Loading packages into Predictors: digests before unpickling, engines, typed input."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry_sync.errors import DigestMismatchError, InvalidInputError, MissingFileError
from registry_sync.package.read import read_package
from registry_sync.package.save import save_onnx, save_sklearn, save_statsmodels
from registry_sync.runtimes import LoadedModel, Predictor, load_predictor
from tests.models import (
    example_rows,
    save_classifier_package,
    save_onnx_package,
    save_sklearn_package,
    save_statsmodels_package,
    train_cost_predictor_statsmodels,
    train_sklearn_linear,
)


class _TouchOnUnpickle:
    """A pickle payload whose loading creates `marker`: proof that it was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


# The file each kind's model lives in: scikit-learn saves skops by default, statsmodels pickles.
ARTIFACTS = {"sklearn": "model.skops", "statsmodels": "model.pkl"}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    return {
        "sklearn": save_sklearn_package(root / "sklearn"),
        "sklearn+onnx": save_sklearn_package(root / "sklearn_onnx", export_onnx=True),
        "onnx": save_onnx_package(root / "onnx"),
        "statsmodels": save_statsmodels_package(root / "statsmodels"),
    }


@pytest.fixture
def copy_of(packages: dict[str, Path], tmp_path: Path):
    def copy(kind: str) -> Path:
        return Path(shutil.copytree(packages[kind], tmp_path / kind))

    return copy


@pytest.mark.parametrize("kind", ["sklearn", "statsmodels"])
def test_tampered_pickle_is_never_unpickled(copy_of, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "unpickled.marker"
    evil = pickle.dumps(_TouchOnUnpickle(marker), protocol=5)
    # The payload works: loading it directly creates the marker (then we remove it).
    pickle.loads(evil)
    assert marker.exists()
    marker.rmdir()

    package_path = copy_of(kind)
    artifact = ARTIFACTS[kind]
    honest = read_package(package_path)  # manifest records the honest artifact's digest
    (package_path / artifact).write_bytes(evil)
    with pytest.raises(DigestMismatchError):
        read_package(package_path)
    # Even a package whose digests were checked earlier (or not at all) is re-hashed at load.
    for package in (honest, read_package(package_path, verify_digests=False)):
        with pytest.raises(DigestMismatchError) as caught:
            load_predictor(package)
        assert caught.value.file == artifact
    assert not marker.exists()


def test_onnx_file_changed_after_reading_is_refused_at_load(copy_of) -> None:
    path = copy_of("onnx")
    package = read_package(path)
    (path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(DigestMismatchError, match=r"model\.onnx"):
        load_predictor(package)
    (path / "model.onnx").unlink()
    with pytest.raises(MissingFileError):
        load_predictor(package)


@pytest.mark.parametrize(
    ("kind", "prefer_onnx", "engine"),
    [
        ("sklearn", True, "sklearn"),
        ("sklearn+onnx", True, "onnx"),
        ("sklearn+onnx", False, "sklearn"),
        ("onnx", True, "onnx"),
        ("onnx", False, "onnx"),
        ("statsmodels", True, "statsmodels"),
    ],
)
def test_engine_is_what_actually_runs(
    packages: dict[str, Path], kind: str, prefer_onnx: bool, engine: str
) -> None:
    predictor = load_predictor(read_package(packages[kind]), prefer_onnx=prefer_onnx)
    assert isinstance(predictor, Predictor)
    assert predictor.engine == engine


@pytest.mark.parametrize("kind", ["sklearn", "sklearn+onnx", "onnx"])
def test_matrix_and_columns_paths_agree_with_the_live_model(
    packages: dict[str, Path], kind: str
) -> None:
    model, features = train_sklearn_linear()
    predictor = load_predictor(read_package(packages[kind]))
    assert predictor.input_names == ("hp", "wt", "disp", "qsec")
    expected = model.predict(features)
    by_matrix = predictor.predict_matrix(features.to_numpy())
    by_columns = predictor.predict_columns({n: features[n].to_numpy() for n in features})
    assert by_matrix.shape == by_columns.shape == (32,)
    np.testing.assert_allclose(by_matrix, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(by_columns, expected, rtol=0, atol=1e-9)
    one_row = predictor.predict_matrix(features.to_numpy()[:1])
    assert one_row.shape == (1,)


def test_statsmodels_has_no_matrix_fast_path(packages: dict[str, Path]) -> None:
    predictor = load_predictor(read_package(packages["statsmodels"]))
    with pytest.raises(TypeError, match="not a fast-path engine"):
        predictor.predict_matrix(np.zeros((1, 3)))


def test_statsmodels_categorical_input_matches_training_levels(packages: dict[str, Path]) -> None:
    predictor = load_predictor(read_package(packages["statsmodels"]))
    results = train_cost_predictor_statsmodels()
    # The gateway sends numbers as float64, so cyl arrives as 6.0, 4.0, 8.0.
    got = predictor.predict_columns(
        {
            "hp": np.array([110.0, 93.0, 175.0]),
            "wt": np.array([2.62, 2.32, 3.44]),
            "cyl": np.array([6.0, 4.0, 8.0]),
        }
    )
    frame = pd.DataFrame({"hp": [110.0, 93.0, 175.0], "wt": [2.62, 2.32, 3.44], "cyl": [6, 4, 8]})
    np.testing.assert_allclose(got, results.predict(frame).to_numpy(), rtol=0, atol=1e-12)
    # by hand from the article's coefficients: 32.4870 - 0.0231 * 110 - 3.1814 * 2.62
    assert got[0] == pytest.approx(32.4870 - 0.0231198 * 110 - 3.1814040 * 2.62, abs=1e-3)


def test_unknown_category_is_a_clear_error_naming_the_column(packages: dict[str, Path]) -> None:
    predictor = load_predictor(read_package(packages["statsmodels"]))
    columns = {"hp": np.array([110.0]), "wt": np.array([2.62]), "cyl": np.array([5.0])}
    with pytest.raises(InvalidInputError) as caught:
        predictor.predict_columns(columns)
    assert caught.value.column == "cyl"
    assert str(caught.value) == "input 'cyl': unknown category 5 (known: 4, 6, 8)"


def test_fractional_value_for_a_whole_number_input_is_refused(packages: dict[str, Path]) -> None:
    predictor = load_predictor(read_package(packages["statsmodels"]))
    columns = {"hp": np.array([110.0]), "wt": np.array([2.62]), "cyl": np.array([6.5])}
    with pytest.raises(InvalidInputError, match=r"expects whole numbers, got 6\.5$"):
        predictor.predict_columns(columns)


def test_loaded_model_accepts_frames_rows_and_columns(packages: dict[str, Path]) -> None:
    model = LoadedModel.from_path(packages["statsmodels"], version="v1.0.0")
    results = train_cost_predictor_statsmodels()
    rows = [{"hp": 110, "wt": 2.62, "cyl": 6}, {"hp": 93, "wt": 2.32, "cyl": 4}]
    expected = results.predict(pd.DataFrame(rows)).to_numpy()
    frame = pd.DataFrame(rows).assign(mpg=[21.0, 22.8])  # extra columns are ignored
    columns = {"hp": [110, 93], "wt": [2.62, 2.32], "cyl": [6, 4]}
    for data in (rows, frame, columns):
        np.testing.assert_allclose(model.predict(data), expected, rtol=0, atol=1e-12)
    assert model.engine == "statsmodels"
    assert model.name == "cost_predictor"
    assert repr(model).startswith("<LoadedModel cost_predictor v1.0.0 engine=statsmodels digest=")


def test_loaded_model_names_a_missing_input(packages: dict[str, Path]) -> None:
    model = LoadedModel.from_path(packages["sklearn+onnx"])
    rows = example_rows(2)
    del rows[1]["wt"]
    with pytest.raises(InvalidInputError, match="input 'wt': required input is missing in row 1"):
        model.predict(rows)
    with pytest.raises(InvalidInputError, match="input 'qsec': required input is missing"):
        model.predict({"hp": [1.0], "wt": [1.0], "disp": [1.0]})
    with pytest.raises(InvalidInputError, match="input 'hp': expects numbers"):
        model.predict([{**example_rows(1)[0], "hp": "fast"}])


def test_loaded_model_predicts_like_the_live_model_on_rows(packages: dict[str, Path]) -> None:
    live, features = train_sklearn_linear()
    for kind in ("sklearn", "sklearn+onnx", "onnx"):
        got = LoadedModel.from_path(packages[kind]).predict(example_rows(3))
        np.testing.assert_allclose(got, live.predict(features.head(3)), atol=1e-9)


def test_scale_and_offset_make_versions_tell_apart(tmp_path: Path) -> None:
    first = LoadedModel.from_path(save_onnx_package(tmp_path / "a"))
    second = LoadedModel.from_path(save_onnx_package(tmp_path / "b", offset=10.0))
    rows = example_rows(2)
    np.testing.assert_allclose(second.predict(rows) - first.predict(rows), 10.0, atol=1e-9)


def test_classifier_predicts_string_labels_on_both_engines(tmp_path: Path) -> None:
    rows = [{"hp": 110.0, "wt": 2.62}, {"hp": 245.0, "wt": 3.57}]
    for onnx in (False, True):
        model = LoadedModel.from_path(save_classifier_package(tmp_path / str(onnx), onnx=onnx))
        assert model.predict(rows).tolist() == ["manual", "automatic"]


def test_onnx_model_with_one_input_per_column_is_fed_by_name(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["hp", "wt"], ["product"])],
        "hp_times_wt",
        [
            helper.make_tensor_value_info("hp", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("wt", TensorProto.FLOAT, [None, 1]),
        ],
        [helper.make_tensor_value_info("product", TensorProto.FLOAT, [None, 1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    example = pd.DataFrame({"hp": [110.0, 93.0], "wt": [2.5, 2.0]})
    saved = save_onnx(proto, tmp_path / "pkg", example=example, name="product")
    assert saved.manifest.signature.outputs[0].type == "float"
    predictor = load_predictor(saved)
    np.testing.assert_allclose(predictor.predict_matrix(example.to_numpy()), [275.0, 186.0])
    got = predictor.predict_columns({"hp": np.array([4.0]), "wt": np.array([0.5])})
    np.testing.assert_allclose(got, [2.0])


def test_pipeline_fitted_on_a_frame_serves_matrices_through_named_columns(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, features = train_sklearn_linear()
    target = features["hp"] * 0.1 - features["wt"]
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(features, target)
    saved = save_sklearn(pipe, tmp_path / "pkg", example=features, name="pipe")
    predictor = load_predictor(saved, prefer_onnx=False)
    np.testing.assert_allclose(
        predictor.predict_matrix(features.to_numpy()), pipe.predict(features)
    )
    by_columns = predictor.predict_columns({n: features[n].to_numpy() for n in features})
    np.testing.assert_allclose(by_columns, pipe.predict(features))


def test_model_fitted_on_a_bare_array_serves_matrices_and_columns(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    _, features = train_sklearn_linear()
    ridge = Ridge().fit(features.to_numpy(), features["hp"] / features["wt"])
    saved = save_sklearn(ridge, tmp_path / "pkg", example=features, name="ridge")
    predictor = load_predictor(saved)
    expected = ridge.predict(features.to_numpy())
    np.testing.assert_allclose(predictor.predict_matrix(features.to_numpy()), expected)
    by_columns = predictor.predict_columns({n: features[n].to_numpy() for n in features})
    np.testing.assert_allclose(by_columns, expected)


def test_formula_model_uses_the_verified_design_matrix_path(packages: dict[str, Path]) -> None:
    predictor = load_predictor(read_package(packages["statsmodels"]))
    # Private, but the point: the 15x faster path must not silently switch itself off.
    assert predictor._design is not None  # type: ignore[attr-defined]
    rows = [{"hp": 110, "wt": 2.62, "cyl": 6}, {"hp": 335, "wt": 3.57, "cyl": 8}]
    expected = train_cost_predictor_statsmodels().predict(pd.DataFrame(rows)).to_numpy()
    got = LoadedModel.from_path(packages["statsmodels"]).predict(rows)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_statsmodels_model_without_a_formula_serves_named_columns(tmp_path: Path) -> None:
    import statsmodels.api as sm

    _, features = train_sklearn_linear(2)
    exog = sm.add_constant(features)
    results = sm.OLS(features["hp"] / 10 + features["wt"], exog).fit()
    saved = save_statsmodels(results, tmp_path / "pkg", example=exog, name="ols")
    assert saved.manifest.formula is None
    assert [spec.name for spec in saved.manifest.signature.inputs] == ["const", "hp", "wt"]
    model = LoadedModel.from_path(saved.path)
    got = model.predict(exog.head(3))
    np.testing.assert_allclose(got, results.predict(exog.head(3)).to_numpy(), rtol=1e-12)


def test_onnx_model_with_a_numeric_categorical_input_serves_through_the_matrix(
    tmp_path: Path,
) -> None:
    """The demo's v1.2.0: cyl is a long restricted to {4, 6, 8}; ONNX still takes one matrix."""
    from sklearn.ensemble import GradientBoostingRegressor

    from registry_sync.errors import InvalidInputError
    from registry_sync.package.data import mtcars
    from registry_sync.package.manifest import Signature
    from registry_sync.package.save import onnx_package_from_sklearn
    from registry_sync.package.signature import infer_inputs, infer_outputs

    data = mtcars()
    features = pd.DataFrame(
        {"hp": data["hp"], "wt": data["wt"], "cyl": data["cyl"].astype("int64")}
    )
    model = GradientBoostingRegressor(n_estimators=10, random_state=0).fit(features, data["mpg"])
    signature = Signature(
        inputs=infer_inputs(features.assign(cyl=data["cyl"])),
        outputs=infer_outputs(model.predict(features)),
    )
    assert signature.inputs[2].categories == [4, 6, 8]
    package = onnx_package_from_sklearn(
        model, tmp_path / "pkg", example=features, name="cost", signature=signature
    )
    predictor = load_predictor(read_package(package.path))
    expected = model.predict(features.head(2))
    matrix = features.head(2).to_numpy(dtype=np.float64)
    assert predictor.predict_matrix(matrix) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(InvalidInputError, match="cyl"):
        predictor.predict_columns(
            {"hp": np.array([110.0]), "wt": np.array([2.6]), "cyl": np.array([5.0])}
        )
