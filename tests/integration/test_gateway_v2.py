"""The Open Inference Protocol (KServe V2) routes through a real `stageserve serve` process.

Clients of MLServer, KServe or Triton send the same bodies to stageserve and get the same
predictions as /predict, stamped with the version that made them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_statsmodels_package

ROWS = example_rows(3)
FEATURES = list(ROWS[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("v2")
    cache = root / "cache"
    cache.mkdir()
    write_state(
        cache,
        [
            entry("cost", "prod", "v1.0.0", save_onnx_package(root / "v1")),
            entry("cost", "dev", "v2.0.0", save_onnx_package(root / "v2", offset=100)),
            entry("sm", "prod", "v3.1.0", save_statsmodels_package(root / "sm", name="sm")),
        ],
    )
    audit = root / "audit.jsonl"
    with ServerProcess(cache, args=["--audit-path", str(audit)]) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


def _infer(
    server: ServerProcess, path: str, body: object, **headers: str
) -> tuple[int, dict[str, Any]]:
    answer = server.request(
        "POST",
        path,
        json.dumps(body).encode(),
        {"content-type": "application/json", **headers},
    )
    return answer.status, answer.body


def _tensors() -> list[dict[str, object]]:
    return [
        {"name": f, "shape": [len(ROWS)], "datatype": "FP64", "data": [r[f] for r in ROWS]}
        for f in FEATURES
    ]


def test_v2_infer_answers_like_predict_and_names_the_version(server: ServerProcess) -> None:
    status, body = _infer(server, "/v2/models/cost/infer", {"id": "abc", "inputs": _tensors()})
    predict = server.predict("cost", {"inputs": ROWS})
    assert status == 200
    assert body["model_name"] == "cost"
    assert body["model_version"] == "v1.0.0"
    assert body["id"] == "abc"
    [output] = body["outputs"]
    assert output["shape"] == [3] and output["datatype"] == "FP64"
    assert output["data"] == pytest.approx(predict.body["predictions"])


def test_v2_matrix_tensor_and_stage_selection(server: ServerProcess) -> None:
    flat = [r[f] for r in ROWS for f in FEATURES]
    matrix = [{"name": "input-0", "shape": [3, len(FEATURES)], "datatype": "FP64", "data": flat}]
    status, dev = _infer(server, "/v2/models/cost/infer?stage=dev", {"inputs": matrix})
    assert status == 200
    assert dev["model_version"] == "v2.0.0"
    status, by_version = _infer(server, "/v2/models/cost/versions/v2.0.0/infer", {"inputs": matrix})
    assert status == 200 and by_version["outputs"] == dev["outputs"]


def test_v2_statsmodels_model_with_a_categorical_input(server: ServerProcess) -> None:
    tensors = [
        {"name": "hp", "shape": [1], "datatype": "FP64", "data": [110.0]},
        {"name": "wt", "shape": [1], "datatype": "FP64", "data": [2.62]},
        {"name": "cyl", "shape": [1], "datatype": "INT64", "data": [6]},
    ]
    status, body = _infer(server, "/v2/models/sm/infer", {"inputs": tensors})
    assert status == 200, body
    assert body["outputs"][0]["data"][0] == pytest.approx(21.6085, abs=1e-3)


def test_v2_errors_are_the_gateways_json_errors(server: ServerProcess) -> None:
    bad = _tensors()
    bad[0] = {**bad[0], "data": [1.0, "SECRET", 3.0]}
    status, body = _infer(server, "/v2/models/cost/infer", {"inputs": bad})
    assert status == 422
    assert body["error"]["details"]["path"] == "$.inputs[0].data[1]"
    assert "SECRET" not in json.dumps(body)
    status, body = _infer(server, "/v2/models/nope/infer", {"inputs": _tensors()})
    assert status == 404 and "cost" in json.dumps(body["error"]["details"])
    status, _ = _infer(server, "/v2/models/cost/versions/v9.9.9/infer", {"inputs": _tensors()})
    assert status == 404


def test_v2_metadata_and_health(server: ServerProcess) -> None:
    meta = server.get("/v2/models/cost")
    assert meta.status == 200
    assert meta.body["name"] == "cost"
    assert sorted(meta.body["versions"]) == ["v1.0.0", "v2.0.0"]
    assert [i["name"] for i in meta.body["inputs"]] == FEATURES
    assert server.get("/v2/health/live").status == 200
    assert server.get("/v2/health/ready").status == 200
    assert server.get("/v2/models/cost/ready").status == 200
    assert server.get("/v2").body["name"] == "stageserve"
    assert server.get("/v2/models/cost/nonsense").status == 404
    assert server.get("/v2/models/cost/infer").status == 405
