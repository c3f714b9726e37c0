"""scikit-learn models saved as skops load under the same allowlist as pickles."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io

from registry_sync.errors import UnsafeArtifactError
from registry_sync.package.read import read_package
from registry_sync.runtimes import LoadPolicy, load_predictor
from registry_sync.runtimes.safe_load.policy import RefusedError
from registry_sync.runtimes.safe_load.skops_file import loads_skops
from tests.models import save_sklearn_package, train_sklearn_gbr
from tests.payloads import payload_package


def test_save_sklearn_writes_skops_and_it_loads_like_the_live_model(tmp_path: Path) -> None:
    model, features = train_sklearn_gbr()
    path = save_sklearn_package(tmp_path / "gbr", gbr=True)
    package = read_package(path)
    assert [f.path for f in package.manifest.files] == ["model.skops"]
    predictor = load_predictor(package)
    # Same trees, same library: bit-identical predictions.
    np.testing.assert_array_equal(
        predictor.predict_matrix(features.to_numpy()), model.predict(features)
    )


def _dump(obj: object) -> bytes:
    return skops.io.dumps(obj, compression=zipfile.ZIP_DEFLATED)


def test_a_skops_file_naming_a_function_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    data = _dump(FunctionTransformer(func=os.system))
    with pytest.raises(RefusedError) as caught:
        loads_skops(data)
    assert caught.value.subject == f"{os.system.__module__}.system"
    # Deliberately widened, it loads (and skops itself never calls it while loading).
    loaded = loads_skops(data, LoadPolicy(extra=(os.system.__module__,)))
    assert loaded.func is os.system


def test_a_skops_package_with_a_refused_type_names_it_at_load(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    good = save_sklearn_package(tmp_path / "good")
    evil = payload_package(
        good, tmp_path / "evil", _dump(FunctionTransformer(func=os.system)), "model.skops"
    )
    with pytest.raises(UnsafeArtifactError, match=r"model\.skops: refused .*system"):
        load_predictor(read_package(evil))


def test_bytes_that_are_not_a_skops_archive_are_refused() -> None:
    with pytest.raises(RefusedError, match="not a skops archive"):
        loads_skops(b"PK not really")
