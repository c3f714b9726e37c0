"""kserve's REST client (`InferenceRESTClient`, protocol v2) against a real `stageserve serve`.

The client runs in its own venv (see clients/kserve_venv.py): JSON and binary inputs (it
declares binary bodies `application/octet-stream`), binary outputs, readiness, and a refusal
as the client reports it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry_sync.package.data import mtcars
from tests.integration.clients.kserve_venv import run_kserve_client
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import NUMERIC_FEATURES, save_onnx_package

pytestmark = pytest.mark.slow

FEATURES = list(NUMERIC_FEATURES[:4])
DATA = mtcars().head(3)
COLUMNS = {name: [float(v) for v in DATA[name]] for name in FEATURES}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("kserve")
    cache = root / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(root / "cost"))])
    with ServerProcess(cache) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


@pytest.mark.parametrize(
    ("binary", "binary_outputs"), [(False, False), (True, False), (True, True)]
)
def test_rest_client_json_and_binary(
    server: ServerProcess, binary: bool, binary_outputs: bool
) -> None:
    rows = [{n: COLUMNS[n][i] for n in FEATURES} for i in range(len(DATA))]
    expected = server.predict("cost", {"inputs": rows}).body["predictions"]
    answer = run_kserve_client(
        f"http://127.0.0.1:{server.port}",
        "infer",
        model="cost",
        columns=COLUMNS,
        binary=binary,
        binary_outputs=binary_outputs,
        output="prediction",
    )
    assert "error" not in answer, answer
    # The same onnxruntime call as /predict, float64 carried exactly by JSON or raw bytes; the
    # tolerance is only there because the two answers come from different requests' code paths.
    assert answer["values"] == pytest.approx(expected, abs=1e-9)
    assert (answer["id"], answer["version"]) == ("kserve-1", "v1.0.0")
    assert answer["server_ready"] and answer["server_live"] and answer["model_ready"]


def test_rest_client_reports_the_refusal_message(server: ServerProcess) -> None:
    answer = run_kserve_client(
        f"http://127.0.0.1:{server.port}",
        "infer",
        model="cost",
        columns={**COLUMNS, "colour": [1.0, 2.0, 3.0]},
        binary=True,
        binary_outputs=False,
        output="prediction",
    )
    assert answer["status"] == 422
    assert answer["error"].startswith("$.inputs[4].name: unknown input")
