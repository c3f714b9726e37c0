"""MLflow's own scoring client and plain pandas against a real `stageserve serve`.

What a user of `mlflow models serve` runs today, unchanged but for the URL: MLflow's
`ScoringServerClient(host, port)` (wait for /ping, /version, invoke a DataFrame: the
`dataframe_split` body with its `index`), and pandas bodies posted to /invocations as JSON
(`to_json(orient="split")`, records) and CSV (`to_csv`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from registry_sync.package.data import mtcars
from registry_sync.package.read import read_package
from registry_sync.runtimes import load_predictor
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import save_statsmodels_package

# mlflow warns on import (its own type-hint inference); the warning is not about our code.
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")

FRAME = mtcars()[["hp", "wt", "cyl"]].head(5).astype({"cyl": "int64"}).reset_index(drop=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, np.ndarray]]:
    root = tmp_path_factory.mktemp("mlflow")
    package = save_statsmodels_package(root / "sm", name="cost")
    predictor = load_predictor(read_package(package))
    expected = np.asarray(predictor.predict_columns({c: FRAME[c].to_numpy() for c in FRAME}))
    cache = root / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", package)])
    with ServerProcess(cache) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        yield server, expected.reshape(-1)


def _client(server: ServerProcess) -> Any:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    return ScoringServerClient("127.0.0.1", server.port)


def test_scoring_server_client_works_unchanged(served: tuple[ServerProcess, np.ndarray]) -> None:
    server, expected = served
    client = _client(server)
    client.wait_server_ready(timeout=30)
    assert client.get_version()
    predictions = client.invoke(FRAME).get_predictions()
    # Same package, same statsmodels call in this process and in the server: the only
    # difference is float64 formatting through JSON (exact round trip), so 1e-9 is ample.
    assert np.asarray(predictions).reshape(-1) == pytest.approx(expected, abs=1e-9)


def test_scoring_server_client_errors_carry_mlflows_shape(
    served: tuple[ServerProcess, np.ndarray],
) -> None:
    server, _ = served
    bad = FRAME.assign(cyl=[4, 6, 8, 5, 6])  # 5 cylinders is not a category of the model
    with pytest.raises(Exception, match=r"error code 422") as caught:
        _client(server).invoke(bad)
    assert '"error_code":"BAD_REQUEST"' in str(caught.value)
    assert "$.dataframe_split.data[3][2]: value is not one of the declared categories" in str(
        caught.value
    )
    with pytest.raises(Exception, match=r"error code 422"):
        _client(server).invoke(FRAME, params={"alpha": 0.1})


def test_pandas_bodies_post_to_invocations(served: tuple[ServerProcess, np.ndarray]) -> None:
    server, expected = served
    url = f"http://127.0.0.1:{server.port}/invocations"
    # An integer column with a missing value becomes float in pandas: 6.0 is still 6.
    floats = FRAME.astype({"cyl": "float64"})
    bodies = [
        ('{"dataframe_split": ' + floats.to_json(orient="split") + "}", "application/json"),
        ('{"dataframe_records": ' + FRAME.to_json(orient="records") + "}", "application/json"),
        (FRAME.assign(extra="ignored").to_csv(index=False), "text/csv"),
    ]
    for body, content_type in bodies:
        answer = httpx.post(url, content=body, headers={"content-type": content_type})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == "v1.0.0"
        predictions = answer.json()["predictions"]
        assert predictions == pytest.approx(list(expected), abs=1e-9)
    ping = httpx.get(f"http://127.0.0.1:{server.port}/ping")
    assert ping.status_code == 200
    refused = httpx.post(url, content=pd.DataFrame({"hp": [1.5]}).to_csv(index=False),
                         headers={"content-type": "text/csv"})  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["message"] == "csv column 'cyl': required field is missing"
