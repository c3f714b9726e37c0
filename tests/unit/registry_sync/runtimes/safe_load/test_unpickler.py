"""The restricted unpickler: real models load; payloads are refused before they run."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from registry_sync.errors import UnsafeArtifactError
from registry_sync.package.data import mtcars
from registry_sync.package.read import read_package
from registry_sync.runtimes import LoadPolicy, load_predictor
from registry_sync.runtimes.safe_load.policy import RefusedError
from registry_sync.runtimes.safe_load.unpickler import restricted_loads
from tests.models import save_statsmodels_package, train_cost_predictor_statsmodels
from tests.payloads import EvalPayload, SystemPayload, payload_package, pickled


def _models() -> dict[str, Any]:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.feature_selection import SelectKBest, f_regression
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    data = mtcars()
    x = data[["hp", "wt", "cyl"]]
    gamma = sm.families.Gamma(sm.families.links.Log())
    columns = ColumnTransformer(
        [("oh", OneHotEncoder(), ["cyl"]), ("sc", StandardScaler(), ["hp", "wt"])]
    )
    return {
        "pipeline": make_pipeline(
            columns, FunctionTransformer(np.abs), SelectKBest(f_regression, k=3), Ridge()
        ).fit(x, data["mpg"]),
        "forest": RandomForestRegressor(n_estimators=3, random_state=0).fit(x, data["mpg"]),
        "hist_gbr": HistGradientBoostingRegressor(max_iter=5).fit(x, data["mpg"]),
        "logistic": LogisticRegression(max_iter=500).fit(x, data["am"]),
        "ols_formula": train_cost_predictor_statsmodels(),
        "logit_numpy_term": smf.logit("am ~ hp + np.log(wt)", data=data).fit(disp=0),
        "glm_gamma": smf.glm("mpg ~ hp + I(wt**2)", data=data, family=gamma).fit(),
        "ols_arrays": sm.OLS(data["mpg"], sm.add_constant(data[["hp", "wt"]])).fit(),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return _models()


def _load(data: bytes, policy: LoadPolicy | None = None) -> Any:
    # A few frames deep, as in the runtime: statsmodels looks up the stack for a formula's
    # evaluation environment while it unpickles.
    def one() -> Any:
        return two()

    def two() -> Any:
        return restricted_loads(data, policy)

    return one()


@pytest.mark.parametrize(
    "name",
    [
        *("pipeline", "forest", "hist_gbr", "logistic"),
        *("ols_formula", "logit_numpy_term", "glm_gamma", "ols_arrays"),
    ],
)
def test_real_models_load_and_predict_like_the_originals(models: dict[str, Any], name: str) -> None:
    model = models[name]
    loaded = _load(pickled(model))
    frame = mtcars().head(5)
    if hasattr(model, "feature_names_in_"):
        frame = frame[list(model.feature_names_in_)]
    if name == "ols_arrays":
        import statsmodels.api as sm

        frame = sm.add_constant(frame[["hp", "wt"]])
    # Same library, same process, same arrays: the same numbers to the last bit.
    np.testing.assert_array_equal(
        np.asarray(loaded.predict(frame)), np.asarray(model.predict(frame))
    )


def test_dataframes_of_every_pandas_dtype_load() -> None:
    frame = pd.DataFrame(
        {
            "t": pd.date_range("2020", periods=3, tz="UTC"),
            "td": pd.to_timedelta([1, 2, 3], unit="s"),
            "p": pd.period_range("2020", periods=3, freq="M"),
            "i": pd.interval_range(0, 3),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "s": pd.arrays.SparseArray([0, 0, 1]),
            "c": pd.Categorical(["a", "b", "a"]),
        },
        index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2), ("c", 3)]),
    )
    pd.testing.assert_frame_equal(_load(pickled(frame)), frame)


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(EvalPayload, "builtins.eval"), (SystemPayload, f"{os.system.__module__}.system")],
)
def test_eval_and_system_payloads_are_refused_naming_the_global(
    tmp_path: Path, payload: Any, refused: str
) -> None:
    marker = tmp_path / "ran"
    data = pickled(payload(marker))
    pickle.loads(data)  # the payload works when loaded plainly ...
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(RefusedError) as caught:
        restricted_loads(data)  # ... and never runs here
    assert caught.value.subject == refused
    assert "unpickle_allow" in str(caught.value)
    assert not marker.exists()


class _Reduce:
    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


@pytest.mark.parametrize(
    ("func", "args", "subject"),
    [
        (subprocess.Popen, (["true"],), "subprocess.Popen"),
        (getattr, ("text", "upper"), "builtins.getattr"),
        (np.load, ("x.npy",), "numpy.load"),
        (pd.read_pickle, ("x.pkl",), "pandas.read_pickle"),
        (np.memmap, ("x.bin",), "numpy.memmap"),
    ],
)
def test_dangerous_globals_inside_and_outside_the_packages_are_refused(
    func: Any, args: tuple[Any, ...], subject: str
) -> None:
    with pytest.raises(RefusedError) as caught:
        restricted_loads(pickled(_Reduce(func, *args)))
    assert caught.value.subject == subject


def _global(module: str, name: str) -> bytes:
    """A protocol-4 pickle that only names `module.name` (and returns it)."""
    return (
        b"\x80\x04\x8c" + bytes([len(module)]) + module.encode()
        + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93."
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy.testing._private.utils", "runstring"),  # exec() of a string
        ("statsmodels.api", "load_pickle"),  # a re-export of statsmodels.iolib's unpickler
        ("numpy", "testing.runstring"),  # a dotted name reaching a denied module
        ("scipy.stats", "norm"),  # an instance: its class execs a template on unpickling
        ("sklearn", "set_config"),  # would change every other model in the process
        ("sklearn.utils", "validation"),  # a module object
    ],
)
def test_names_that_resolve_to_denied_things_are_refused(module: str, name: str) -> None:
    with pytest.raises(RefusedError):
        restricted_loads(_global(module, name))


def test_state_is_never_set_on_a_class(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    # GLOBAL LinearRegression, state {'predict': None} as slot state, BUILD: a monkeypatch.
    data = _global("sklearn.linear_model", "LinearRegression")[:-1] + b"N}\x8c\x07predictNs\x86b."
    with pytest.raises(RefusedError, match="only be set on an instance"):
        restricted_loads(data)
    assert callable(LinearRegression.predict)


def test_a_plain_class_is_never_called_with_the_files_arguments() -> None:
    from statsmodels.imputation.mice import MICEData

    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(RefusedError, match="never called"):
        restricted_loads(pickled(_Reduce(MICEData, frame)))


@pytest.mark.parametrize(
    "formula",
    [
        "mpg ~ hp + I(__import__('os').mkdir(MARKER))",
        "mpg ~ hp + eval('1')",
        "mpg ~ hp + np.load('x')",
    ],
)
def test_a_statsmodels_formula_that_runs_code_is_refused_before_statsmodels_evaluates_it(
    tmp_path: Path, formula: str
) -> None:
    marker = tmp_path / "ran"
    results = train_cost_predictor_statsmodels()
    results.model.data.formula = formula.replace("MARKER", repr(str(marker)))
    data = pickled(results)
    if "mkdir" in formula:  # the payload works when loaded plainly (statsmodels evals it)
        with pytest.raises(Exception):  # noqa: B017 - whatever the formula engine raises next
            _plain_deep(data)
        assert marker.is_dir()
        marker.rmdir()
    with pytest.raises(RefusedError, match="formula"):
        _load(data)
    assert not marker.exists()


def _plain_deep(data: bytes) -> Any:
    def one() -> Any:
        return two()

    def two() -> Any:
        return pickle.Unpickler(io.BytesIO(data)).load()

    return one()


def test_a_text_model_spec_is_refused() -> None:
    results = train_cost_predictor_statsmodels()
    results.model.model_spec = "mpg ~ hp"
    with pytest.raises(RefusedError, match="model_spec"):
        _load(pickled(results))


class Custom:
    """A class outside the allowlist, as a user's own transformer would be."""

    def __init__(self) -> None:
        self.value = 3


def test_extra_modules_widen_the_allowlist_deliberately() -> None:
    data = pickled(Custom())
    with pytest.raises(RefusedError, match=__name__):
        restricted_loads(data)
    assert restricted_loads(data, LoadPolicy(extra=(__name__,))).value == 3
    assert restricted_loads(data, LoadPolicy(extra=(f"{__name__}.Custom",))).value == 3
    assert restricted_loads(data, LoadPolicy(unrestricted=True)).value == 3


def test_a_payload_package_with_correct_digests_is_refused_at_load(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    good = save_statsmodels_package(tmp_path / "good")
    evil = payload_package(good, tmp_path / "evil", pickled(EvalPayload(marker)))
    with pytest.raises(UnsafeArtifactError) as caught:
        load_predictor(read_package(evil))
    assert caught.value.subject == "builtins.eval"
    assert caught.value.file == "model.pkl"
    assert "model.pkl: refused builtins.eval" in str(caught.value)
    assert not marker.exists()
    assert load_predictor(read_package(good)).engine == "statsmodels"


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_every_pickle_protocol_of_a_real_model_loads(models: dict[str, Any], protocol: int) -> None:
    # Protocol 0 rebuilds plain objects with copyreg._reconstructor(cls, object, state) and
    # arrays with numpy's _reconstruct; 2+ with NEWOBJ; 5 adds out-of-band-capable buffers.
    model = models["pipeline"]
    loaded = _load(pickle.dumps(model, protocol=protocol))
    frame = mtcars().head(3)[list(model.feature_names_in_)]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_copyreg_reconstructor_only_rebuilds_on_a_plain_base() -> None:
    import copyreg

    from sklearn.linear_model import LinearRegression

    # base.__init__(obj, state) would run the DataFrame constructor on the file's data.
    crafted = pickled(_Reduce(copyreg._reconstructor, LinearRegression, pd.DataFrame, {}))
    with pytest.raises(RefusedError, match=r"copyreg\._reconstructor"):
        restricted_loads(crafted)


def test_functools_partial_wraps_only_what_the_allowlist_allows() -> None:
    import functools

    assert restricted_loads(pickled(functools.partial(np.abs)))(-2) == 2
    with pytest.raises(RefusedError, match=r"\.system"):
        restricted_loads(pickled(functools.partial(os.system, "true")))
