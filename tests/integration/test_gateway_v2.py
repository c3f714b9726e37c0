"""The Open Inference Protocol (KServe V2) routes through a real `stageserve serve` process.

Clients of MLServer, KServe or Triton send the same bodies to stageserve and get the same
predictions as /predict, stamped with the version that made them.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
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
    with ServerProcess(cache, args=["--audit-path", str(root / "audit.jsonl")]) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


@pytest.fixture(scope="module")
def audit(server: ServerProcess) -> Path:
    return server.cache.parent / "audit.jsonl"


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


def test_v2_errors_have_the_protocols_shape_and_name_the_element(server: ServerProcess) -> None:
    bad = _tensors()
    bad[0] = {**bad[0], "data": [1.0, "SECRET", 3.0]}
    status, body = _infer(server, "/v2/models/cost/infer", {"inputs": bad})
    assert status == 422
    # V2 clients read {"error": "<string>"} (tritonclient and kserve print that string).
    assert body == {"error": "$.inputs[0].data[1]: expected number, got string"}
    status, body = _infer(server, "/v2/models/nope/infer", {"inputs": _tensors()})
    assert status == 404 and body == {"error": "no model 'nope'"}
    status, _ = _infer(server, "/v2/models/cost/versions/v9.9.9/infer", {"inputs": _tensors()})
    assert status == 404
    assert server.get("/v2/models/cost/nonsense").body == {
        "error": "no such route; see GET /v2/models/{model}, .../ready, POST .../infer"
    }


def test_a_refusal_by_a_chosen_version_says_which_version_refused(server: ServerProcess) -> None:
    bad = _tensors()
    bad[0] = {**bad[0], "data": [1.0, "x", 3.0]}
    answer = server.request(
        "POST", "/v2/models/cost/infer?stage=dev", json.dumps({"inputs": bad}).encode()
    )
    assert answer.status == 422
    assert answer.headers["x-model-version"] == "v2.0.0"
    assert answer.headers["x-model-digest"].startswith("sha256:")
    refused = server.predict("cost", {"inputs": [{"hp": "x"}]})
    assert refused.status == 422 and refused.headers["x-model-version"] == "v1.0.0"
    unknown = server.predict("nope", {"inputs": ROWS})
    assert "x-model-version" not in unknown.headers


def test_a_version_pinned_request_for_an_unserved_version_is_counted_and_audited(
    server: ServerProcess, audit: Path
) -> None:
    answer = server.request(
        "POST",
        "/v2/models/cost/versions/v9.9.9/infer",
        json.dumps({"inputs": _tensors()}).encode(),
        {"x-request-id": "pinned-unserved-1"},
    )
    assert answer.status == 404
    # The server's own id keys the record; the client's is kept beside it.
    assert answer.headers["x-client-request-id"] == "pinned-unserved-1"
    rid = answer.headers["x-request-id"]

    def record() -> dict[str, Any] | None:
        for line in audit.read_text().splitlines():
            entry = json.loads(line)
            if entry["request_id"] == rid:
                assert entry["client_request_id"] == "pinned-unserved-1"
                return entry  # type: ignore[no-any-return]
        return None

    wait_until(lambda: record() is not None, 10, "the audit record")
    entry = record()
    assert entry is not None
    assert (entry["model"], entry["status"], entry["version"]) == ("cost", 404, None)
    metrics = server.get("/metrics").body
    assert 'stageserve_requests_total{model="cost",stage="_unknown",status="404",version=""}' in (
        metrics
    )


def test_v2_metadata_and_health(server: ServerProcess) -> None:
    meta = server.get("/v2/models/cost")
    assert meta.status == 200
    assert meta.body["name"] == "cost"
    assert sorted(meta.body["versions"]) == ["v1.0.0", "v2.0.0"]
    assert [i["name"] for i in meta.body["inputs"]] == FEATURES
    assert meta.body["parameters"]["positional_order"] == FEATURES
    assert server.get("/v2/health/live").status == 200
    assert server.get("/v2/health/ready").status == 200
    assert server.get("/v2/models/cost/ready").status == 200
    assert server.get("/v2").body["name"] == "stageserve"
    assert server.get("/v2/models/cost/nonsense").status == 404
    assert server.get("/v2/models/cost/infer").status == 405


def test_model_readiness_is_for_the_stage_asked(server: ServerProcess) -> None:
    # sm serves prod only: its dev stage is not ready, whatever prod does.
    assert server.get("/v2/models/sm/ready").status == 200
    assert server.get("/v2/models/sm/ready?stage=prod").status == 200
    ready = server.get("/v2/models/cost/ready?stage=dev")
    # The protocol's readiness is the status, with an empty body; the version is a header.
    assert (ready.status, ready.body, ready.headers["x-model-version"]) == (200, "", "v2.0.0")
    assert server.get("/v2/models/sm/ready?stage=dev").status == 404
    assert server.get("/v2/models/sm/versions/v3.1.0/ready").status == 200
    assert server.get("/v2/models/sm/versions/v9/ready").status == 404


def test_bodies_without_content_type_or_as_octet_stream_are_json(server: ServerProcess) -> None:
    body = json.dumps({"inputs": _tensors()}).encode()
    expected = _infer(server, "/v2/models/cost/infer", {"inputs": _tensors()})[1]["outputs"]
    for headers in ({}, {"content-type": "application/octet-stream"}):
        answer = server.request("POST", "/v2/models/cost/infer", body, headers)
        assert answer.status == 200, answer.body
        assert answer.body["outputs"] == expected
    refused = server.request("POST", "/v2/models/cost/infer", body, {"content-type": "text/xml"})
    assert refused.status == 415 and "application/octet-stream" in refused.body["error"]
    plain = server.request("POST", "/predict/cost", json.dumps({"inputs": ROWS}).encode())
    assert plain.status == 200


def test_gzip_and_deflate_bodies_are_read_within_the_body_limit(server: ServerProcess) -> None:
    body = json.dumps({"inputs": _tensors()}).encode()
    expected = _infer(server, "/v2/models/cost/infer", {"inputs": _tensors()})[1]["outputs"]
    for name, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        answer = server.request("POST", "/v2/models/cost/infer", packed, {"content-encoding": name})
        assert answer.status == 200, answer.body
        assert answer.body["outputs"] == expected
    # 1 MiB limit (the default); 2 MiB of zeros compresses to ~2 kB.
    bomb = gzip.compress(b" " * (2 * 1_048_576))
    answer = server.request("POST", "/predict/cost", bomb, {"content-encoding": "gzip"})
    assert answer.status == 413
    answer = server.request("POST", "/predict/cost", body, {"content-encoding": "gzip"})
    assert answer.status == 400
    answer = server.request("POST", "/predict/cost", body, {"content-encoding": "br"})
    assert answer.status == 415
