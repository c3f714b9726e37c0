"""Hostile JSON and names through a real server: always a specific 4xx, never a 500, and error
bodies that never reflect more than a short, sanitised prefix of what the client sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import Served, ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_statsmodels_package

pytestmark = pytest.mark.slow

ROWS = example_rows(2)
SM_ROW = {"hp": 110.0, "wt": 2.62, "cyl": 6}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    cache = root / "cache"
    cache.mkdir()
    entries = [
        entry("cost", "prod", "v1.0.0", save_onnx_package(root / "cost")),
        entry("sm", "prod", "v1.0.0", save_statsmodels_package(root / "sm", name="sm")),
    ]
    write_state(cache, entries)
    with ServerProcess(cache, env={"STAGESERVE_AUDIT_PATH": str(root / "audit.jsonl")}) as srv:
        wait_until(lambda: srv.get("/readyz").status == 200, 60, "ready")
        yield srv


def _post(server: ServerProcess, path: str, body: bytes | str, **headers: str) -> Served:
    data = body.encode() if isinstance(body, str) else body
    return server.request("POST", path, data, {**JSON, **headers})


def _refused(answer: Served, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    error: dict[str, Any] = answer.body["error"]
    assert error["code"] == code, error
    return error


def _v2_refused(answer: Served, status: int) -> str:
    """V2 errors have the protocol's shape, `{"error": "<message>"}`."""
    assert answer.status == status, answer.body
    message: str = answer.body["error"]
    return message


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deep_nesting_in_fields_typed_any_is_a_400(server: ServerProcess) -> None:
    split = '{"dataframe_split": {"columns": ["hp"], "data": [[1]], "index": ' + _deep(5000) + "}}"
    _refused(_post(server, "/predict/cost", split), 400, "malformed_request")
    in_data = '{"dataframe_split": {"columns": ["hp"], "data": [' + _deep(5000) + "]}}"
    _refused(_post(server, "/predict/cost", in_data), 400, "malformed_request")
    tensor = {"name": "hp", "shape": [1], "datatype": "FP64", "data": [1.0]}
    v2 = json.dumps({"inputs": [tensor], "parameters": {"x": "@"}}).replace('"@"', _deep(5000))
    assert "nests too deeply" in _v2_refused(_post(server, "/v2/models/cost/infer", v2), 400)
    v2_data = json.dumps({"inputs": [{**tensor, "data": "@"}]}).replace('"@"', _deep(5000))
    assert "nests" in _v2_refused(_post(server, "/v2/models/cost/infer", v2_data), 400)


def test_integers_past_the_inputs_type_are_a_422_naming_the_field(server: ServerProcess) -> None:
    huge = '{"inputs": [{"hp": 110, "wt": 2.62, "cyl": 1%s}]}' % ("0" * 400)
    error = _refused(_post(server, "/predict/sm", huge), 422, "schema_mismatch")
    assert error["details"]["path"] == "$.inputs[0].cyl"
    assert "integer" in error["details"]["reason"]
    as_double = '{"inputs": [{"hp": 1%s, "wt": 2.62, "cyl": 6}]}' % ("0" * 400)
    error = _refused(_post(server, "/predict/sm", as_double), 422, "schema_mismatch")
    assert error["details"]["path"] == "$.inputs[0].hp"


def test_finite_inputs_the_model_overflows_on_are_a_422_logged_once(
    server: ServerProcess,
) -> None:
    body = json.dumps({"inputs": [SM_ROW, {**SM_ROW, "wt": -1.79e308}]})
    for _ in range(3):
        error = _refused(_post(server, "/predict/sm", body), 422, "input_out_of_range")
        assert error["details"] == {"row": 1}
    assert _post(server, "/predict/sm", json.dumps({"inputs": [SM_ROW]})).status == 200
    lines = [json.loads(line) for line in server.logs().splitlines() if "out of range" in line]
    assert [line["level"] for line in lines] == ["info"]  # once a minute at most


def test_error_bodies_never_reflect_what_the_client_smuggles_into_names(
    server: ServerProcess,
) -> None:
    key = "k" * 400_000
    row = {**ROWS[0], key: 1}
    answer = _post(server, "/predict/cost", json.dumps({"inputs": [row]}))
    error = _refused(answer, 422, "schema_mismatch")
    assert len(json.dumps(answer.body)) < 1000
    assert error["details"]["path"].startswith("$.inputs[0].kkkk")
    evil = "<img src=x onerror=alert(1)>" + "x" * 10_000
    for path in (
        f"/predict/{evil}",
        f"/predict/cost?stage={evil}",
        f"/v2/models/{evil}/infer",
        f"/v2/models/cost/versions/{evil}/infer",
    ):
        answer = _post(server, path.replace(" ", "%20"), json.dumps({"inputs": ROWS}))
        assert answer.status == 404, (path[:40], answer.status)
        text = json.dumps(answer.body)
        assert "<img" not in text and len(text) < 1000, path[:40]
    shown = server.get(f"/models/{evil}".replace(" ", "%20"))
    assert shown.status == 404 and "<img" not in json.dumps(shown.body)
    tensor = {"name": "hp", "shape": [987654321], "datatype": "FP64", "data": [1.0]}
    answer = _post(server, "/v2/models/cost/infer", json.dumps({"inputs": [tensor]}))
    assert "987654321" not in _v2_refused(answer, 422)


def test_a_repeated_key_is_a_422(server: ServerProcess) -> None:
    cells = ", ".join(f'"{k}": {v}' for k, v in ROWS[0].items())
    in_row = '{"inputs": [{' + cells + ', "hp": 1e6}]}'
    error = _refused(_post(server, "/predict/cost", in_row), 422, "schema_mismatch")
    assert "'hp' appears twice" in error["details"]["reason"]
    top = '{"inputs": [{' + cells + '}], "inputs": [{' + cells + "}]}"
    _refused(_post(server, "/predict/cost", top), 422, "schema_mismatch")
    tensor = '{"name": "hp", "name": "wt", "shape": [1], "datatype": "FP64", "data": [1.0]}'
    v2 = '{"inputs": [' + tensor + "]}"
    assert "appears twice" in _v2_refused(_post(server, "/v2/models/cost/infer", v2), 422)
    # A ':' inside a string is not a key: such bodies are still answered.
    split = {"dataframe_split": {"columns": list(ROWS[0]), "data": [list(ROWS[0].values())]}}
    split["dataframe_split"]["index"] = ["12:30"]
    assert _post(server, "/predict/cost", json.dumps(split)).status == 200


def test_the_server_keys_the_audit_by_its_own_id_and_keeps_the_clients_beside_it(
    server: ServerProcess,
) -> None:
    body = json.dumps({"inputs": ROWS})
    first = _post(server, "/predict/cost", body, **{"x-request-id": "client-7"})
    second = _post(server, "/predict/cost", body, **{"x-request-id": "client-7"})
    refused = _post(server, "/predict/nope", body, **{"x-request-id": "client-7"})
    answers = (first, second, refused)
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == 3 and "client-7" not in ids
    assert [a.headers["x-client-request-id"] for a in answers] == ["client-7"] * 3
    assert first.body["request_id"] == ids[0]
    audit = Path(server.cache.parent / "audit.jsonl")
    wait_until(
        lambda: audit.exists() and ids[2] in audit.read_text(), 30, "the records are written"
    )
    records = {r["request_id"]: r for r in map(json.loads, audit.read_text().splitlines())}
    assert all(records[rid]["client_request_id"] == "client-7" for rid in ids)
    unprintable = _post(server, "/predict/cost", body, **{"x-request-id": "a b"})
    assert "x-client-request-id" not in unprintable.headers
