"""The gateway's HTTP API through a real `stageserve serve --cache DIR` process on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry_sync.package.read import read_package
from registry_sync.runtimes import load_predictor
from registry_sync.sync.snapshot import ModelSyncError
from tests.integration.server import ServerProcess, entry, write_state
from tests.models import (
    example_rows,
    save_classifier_package,
    save_onnx_package,
    save_sklearn_package,
    save_statsmodels_package,
    train_cost_predictor_statsmodels,
)

ROWS = example_rows(3)
FEATURES = list(ROWS[0])
SECRET = "SECRET-VALUE-7f3a"


def _corrupt(package: Path) -> Path:
    artifact = next(p for p in package.iterdir() if p.suffix in (".onnx", ".pkl", ".skops"))
    artifact.write_bytes(b"not a model" + artifact.read_bytes()[11:])
    return package


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("http")
    cache = root / "cache"
    cache.mkdir()
    pk = root / "packages"
    entries = [
        entry("cost", "prod", "v1.0.0", save_onnx_package(pk / "cost-v1")),
        entry("cost", "staging", "v2.0.0", save_onnx_package(pk / "cost-v2", offset=100)),
        entry("lin", "prod", "v1.0.0", save_sklearn_package(pk / "lin", name="lin")),
        entry("sm", "prod", "v3.1.0", save_statsmodels_package(pk / "sm", name="sm")),
        entry("gearbox", "prod", "v1.0.0", save_classifier_package(pk / "gear")),
        entry("broken", "prod", "v1.0.0", _corrupt(save_onnx_package(pk / "broken"))),
    ]
    errors = [
        ModelSyncError(
            model="lin", stage="dev", version="v9.0.0", message="tag not found", at="2026-01-01"
        )
    ]
    write_state(cache, entries, errors)
    env = {
        "STAGESERVE_MAX_ROWS": "50",
        "STAGESERVE_MAX_BODY_BYTES": "20000",
        "STAGESERVE_AUDIT_PATH": str(root / "audit.jsonl"),
    }
    with ServerProcess(cache, env=env) as srv:
        srv_wait_loaded(srv)
        yield srv


def srv_wait_loaded(srv: ServerProcess) -> None:
    from tests.integration.server import wait_until

    def settled() -> bool:
        models = srv.get("/models").body["models"]
        states = [st["state"] for m in models for st in m["stages"].values()]
        # Six entries, and lin#dev, whose assigned version never reached the cache.
        return len(states) == 7 and all(s in ("loaded", "failed", "sync_failed") for s in states)

    wait_until(settled, 60, "every stage loaded or failed")


def _expected(package_dir: Path, rows: list[dict[str, float]]) -> list[float]:
    predictor = load_predictor(read_package(package_dir))
    columns = {n: np.array([r[n] for r in rows], dtype=np.float64) for n in predictor.input_names}
    return [float(v) for v in predictor.predict_columns(columns)]


def test_rows_and_columns_get_the_same_predictions_stamped_with_the_version(
    server: ServerProcess,
) -> None:
    rows = server.predict("cost", {"inputs": ROWS})
    columns = server.predict("cost", {"inputs": {k: [r[k] for r in ROWS] for k in FEATURES}})
    assert rows.status == columns.status == 200
    assert rows.body["predictions"] == pytest.approx(columns.body["predictions"])
    assert len(rows.body["predictions"]) == 3
    assert rows.body["model"] == "cost"
    assert rows.body["stage"] == "prod"
    assert rows.body["version"] == rows.headers["x-model-version"] == "v1.0.0"
    assert rows.headers["x-model-digest"].startswith("sha256:")
    assert rows.body["request_id"] == rows.headers["x-request-id"]
    assert rows.body["request_id"] != columns.body["request_id"]


def test_mlflow_scoring_formats_are_accepted(server: ServerProcess) -> None:
    reference = server.predict("cost", {"inputs": ROWS}).body["predictions"]
    reordered = list(reversed(FEATURES))
    payloads = [
        {
            "dataframe_split": {
                "columns": FEATURES,
                "data": [[r[k] for k in FEATURES] for r in ROWS],
            }
        },
        {
            "dataframe_split": {
                "columns": reordered,
                "data": [[r[k] for k in reordered] for r in ROWS],
            }
        },
        {"dataframe_records": ROWS},
        {"instances": ROWS},
    ]
    for payload in payloads:
        answer = server.predict("cost", payload)
        assert answer.status == 200, answer.body
        assert answer.body["predictions"] == pytest.approx(reference)


def test_every_engine_serves_what_the_model_predicts_in_process(
    server: ServerProcess, tmp_path: Path
) -> None:
    lin = server.predict("lin", {"inputs": ROWS})
    assert lin.status == 200
    assert lin.body["predictions"] == pytest.approx(
        _expected(save_sklearn_package(tmp_path / "lin", name="lin"), ROWS)
    )
    cars = [{"cyl": 6, "hp": 110.0, "wt": 2.62}, {"cyl": 4, "hp": 93.0, "wt": 2.32}]
    sm = server.predict("sm", {"inputs": cars})
    assert sm.status == 200, sm.body
    assert sm.body["version"] == "v3.1.0"
    expected = train_cost_predictor_statsmodels().predict(pd.DataFrame(cars))
    assert sm.body["predictions"] == pytest.approx(list(expected))
    gear = server.predict(
        "gearbox", {"inputs": [{"hp": 110.0, "wt": 2.62}, {"hp": 245, "wt": 3.57}]}
    )
    assert gear.status == 200, gear.body
    assert set(gear.body["predictions"]) <= {"manual", "automatic"}


def test_stage_query_selects_that_stages_version(server: ServerProcess) -> None:
    prod = server.predict("cost", {"inputs": ROWS[:1]}, stage="prod")
    staging = server.predict("cost", {"inputs": ROWS[:1]}, stage="staging")
    assert (prod.body["version"], staging.body["version"]) == ("v1.0.0", "v2.0.0")
    assert staging.body["predictions"][0] - prod.body["predictions"][0] == pytest.approx(100)


def test_incoming_request_id_is_echoed_beside_the_servers_own(server: ServerProcess) -> None:
    answer = server.predict("cost", {"inputs": ROWS[:1]}, x_request_id="abc-123")
    assert answer.headers["x-client-request-id"] == "abc-123"
    assert answer.headers["x-request-id"] == answer.body["request_id"] != "abc-123"


def _error(answer: object, status: int, code: str) -> dict[str, object]:
    assert answer.status == status, answer.body  # type: ignore[attr-defined]
    body = answer.body  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert SECRET not in json.dumps(body)
    return body["error"]  # type: ignore[no-any-return]


def test_malformed_json_is_400(server: ServerProcess) -> None:
    answer = server.request(
        "POST", "/predict/cost", b'{"inputs": [', {"content-type": "application/json"}
    )
    _error(answer, 400, "malformed_request")


def test_unknown_model_is_404_listing_the_models(server: ServerProcess) -> None:
    error = _error(server.predict("nope", {"inputs": ROWS}), 404, "not_found")
    assert set(error["details"]["models"]) >= {"cost", "lin", "sm"}  # type: ignore[index]


def test_unknown_stage_is_404_listing_the_stages(server: ServerProcess) -> None:
    error = _error(server.predict("cost", {"inputs": ROWS}, stage="qa"), 404, "not_found")
    assert error["details"]["stages"] == ["prod", "staging"]  # type: ignore[index]


def test_get_on_predict_is_405_with_allow_header(server: ServerProcess) -> None:
    answer = server.get("/predict/cost")
    _error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "POST"


def test_body_over_the_byte_limit_is_413(server: ServerProcess) -> None:
    big = {"inputs": ROWS[:1], "pad": "x" * 30_000}
    _error(server.predict("cost", big), 413, "payload_too_large")


def test_more_rows_than_the_limit_is_413(server: ServerProcess) -> None:
    _error(server.predict("cost", {"inputs": ROWS[:1] * 51}), 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/jsonl"])
def test_wrong_content_type_is_415(server: ServerProcess, content_type: str) -> None:
    headers = {"content-type": content_type}
    answer = server.request("POST", "/predict/cost", json.dumps({"inputs": ROWS}).encode(), headers)
    _error(answer, 415, "unsupported_media_type")


def test_json_with_a_charset_parameter_is_accepted(server: ServerProcess) -> None:
    body = json.dumps({"inputs": ROWS}).encode()
    headers = {"content-type": "Application/JSON; charset=utf-8"}
    assert server.request("POST", "/predict/cost", body, headers).status == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"inputs": [*ROWS, {**ROWS[0], "hp": SECRET}]},
            "$.inputs[3].hp: expected number, got string",
        ),
        (
            {"inputs": [{"hp": 1.0, "wt": 2.0, "disp": 3.0}]},
            "$.inputs[0].qsec: required field is missing",
        ),
        ({"inputs": [{**ROWS[0], "colour": SECRET}]}, "$.inputs[0].colour: unknown field"),
        (
            {"inputs": {"hp": [1.0, 2.0], "wt": [1.0], "disp": [1.0], "qsec": [1.0]}},
            "$.inputs.wt: columns have different lengths",
        ),
        (
            {"inputs": {"hp": [1.0], "wt": [SECRET], "disp": [1.0], "qsec": [1.0]}},
            "$.inputs.wt[0]: expected number, got string",
        ),
        ({"inputs": []}, "$.inputs: no rows"),
        (
            {"dataframe_split": {"columns": FEATURES, "data": [[1.0, 2.0, SECRET, 4.0]]}},
            "$.dataframe_split.data[0][2]: expected number, got string",
        ),
        (
            {"inputs": ROWS, "instances": ROWS},
            "$: expected exactly one of inputs, dataframe_split, dataframe_records, instances",
        ),
    ],
)
def test_schema_mismatch_is_422_naming_the_path_without_echoing_values(
    server: ServerProcess, payload: object, message: str
) -> None:
    error = _error(server.predict("cost", payload), 422, "schema_mismatch")
    assert error["message"] == message


def test_a_number_too_large_for_a_double_is_422_non_finite(server: ServerProcess) -> None:
    body = json.dumps({"inputs": [{**ROWS[0], "hp": 12345.5}]}).replace("12345.5", "1e999")
    answer = server.request(
        "POST", "/predict/cost", body.encode(), {"content-type": "application/json"}
    )
    error = _error(answer, 422, "schema_mismatch")
    assert error["message"] == "$.inputs[0].hp: number out of range (non-finite)"


def test_a_value_outside_the_declared_categories_is_422(server: ServerProcess) -> None:
    error = _error(
        server.predict("sm", {"inputs": [{"cyl": 5, "hp": 100.0, "wt": 3.0}]}),
        422,
        "schema_mismatch",
    )
    assert error["message"] == "$.inputs[0].cyl: value is not one of the declared categories"


def test_inputs_the_model_overflows_on_are_a_counted_422_never_an_answer(
    server: ServerProcess,
) -> None:
    # Finite inputs, non-finite output: the input is out of the model's range (the client's
    # to fix), not a server fault (500 stays for those).
    before = _sample(server, "stageserve_requests_total", model="cost", stage="prod", status="422")
    huge = {"inputs": [{k: 1.7e308 for k in FEATURES}]}
    _error(server.predict("cost", huge), 422, "input_out_of_range")
    after = _sample(server, "stageserve_requests_total", model="cost", stage="prod", status="422")
    assert after == before + 1


def test_stage_whose_version_failed_to_load_is_503_with_retry_after(server: ServerProcess) -> None:
    answer = server.predict("broken", {"inputs": ROWS})
    _error(answer, 503, "not_ready")
    assert int(answer.headers["retry-after"]) > 0


def test_models_lists_every_stage_with_version_state_signature_card_and_errors(
    server: ServerProcess,
) -> None:
    models = {m["name"]: m for m in server.get("/models").body["models"]}
    assert set(models) == {"broken", "cost", "gearbox", "lin", "sm"}
    prod = models["cost"]["stages"]["prod"]
    assert prod["version"] == "v1.0.0"
    assert prod["state"] == "loaded"
    assert prod["digest"].startswith("sha256:")
    assert [c["name"] for c in prod["signature"]["inputs"]] == FEATURES
    assert prod["card"]["owner"] == "tests"
    assert models["cost"]["stages"]["staging"]["version"] == "v2.0.0"
    broken = models["broken"]["stages"]["prod"]
    assert broken["state"] == "failed"
    assert broken["version"] is None
    assert "sha256" in broken["last_error"]
    assert models["lin"]["sync"]["errors"][0]["message"] == "tag not found"
    assert models["lin"]["sync"]["generated_at"]
    # A stage the registry assigns but whose version never reached the cache is listed too.
    dev = models["lin"]["stages"]["dev"]
    assert (dev["assigned_version"], dev["version"], dev["state"]) == (
        "v9.0.0",
        None,
        "sync_failed",
    )
    assert dev["reason"] == "the sync cannot bring the assigned version here: tag not found"


def test_models_shows_one_model_and_404_for_an_unknown_one(server: ServerProcess) -> None:
    one = server.get("/models/sm")
    assert one.status == 200
    assert one.body["stages"]["prod"]["engine"] == "statsmodels"
    _error(server.get("/models/nope"), 404, "not_found")


def test_healthz_is_200_and_readyz_is_503_naming_what_is_missing(server: ServerProcess) -> None:
    assert server.get("/healthz").status == 200
    error = _error(server.get("/readyz"), 503, "not_ready")
    assert error["details"]["missing"] == [  # type: ignore[index]
        m
        for m in error["details"]["missing"]
        if m.startswith("broken#prod: failed")  # type: ignore[index]
    ]


def test_schema_describes_each_served_models_predict_request(server: ServerProcess) -> None:
    doc = server.get("/schema").body
    op = doc["paths"]["/predict/cost"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    rows = body["properties"]["inputs"]["anyOf"][0]
    assert set(rows["items"]["properties"]) == set(FEATURES)
    assert op["parameters"][0]["schema"]["enum"] == ["prod", "staging"]
    assert "/predict/broken" not in doc["paths"]


def _families(server: ServerProcess) -> dict[str, object]:
    answer = server.get("/metrics")
    assert answer.status == 200
    return {f.name: f for f in text_string_to_metric_families(answer.body)}


def _sample(server: ServerProcess, name: str, **labels: str) -> float:
    total = 0.0
    for family in _families(server).values():
        for s in family.samples:  # type: ignore[attr-defined]
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_metrics_count_requests_latency_rows_and_versions(server: ServerProcess) -> None:
    count = "stageserve_requests_total"
    ok = {"model": "lin", "stage": "prod", "version": "v1.0.0", "status": "200"}
    before = _sample(server, count, **ok)
    rows_before = _sample(server, "stageserve_request_rows_sum", model="lin")
    for _ in range(5):
        assert server.predict("lin", {"inputs": ROWS}).status == 200
    server.predict("lin", {"inputs": [{"hp": "x"}]})
    assert _sample(server, count, **ok) == before + 5
    assert _sample(server, "stageserve_request_rows_sum", model="lin") == rows_before + 15
    assert _sample(server, count, model="lin", status="422") >= 1
    assert _sample(server, "stageserve_validation_errors_total", model="lin", kind="type") >= 1
    assert (
        _sample(server, "stageserve_request_duration_seconds_count", model="lin", stage="prod") >= 5
    )
    assert _sample(server, "stageserve_inference_duration_seconds_count", model="lin") >= 5
    assert (
        _sample(server, "stageserve_model_info", model="cost", stage="staging", version="v2.0.0")
        == 1
    )
    assert _sample(server, "stageserve_model_load_failures_total", model="broken") >= 1
    assert _sample(server, "stageserve_model_load_duration_seconds_count", model="sm") == 1
    assert "stageserve_inflight_requests" in _families(server)
    assert _sample(server, count, model="_unknown", status="404") >= 0


def _scrape(server: ServerProcess, **headers: str) -> tuple[dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200
        return {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_metrics_scrape_is_the_text_format_with_one_charset_and_no_created_series(
    server: ServerProcess,
) -> None:
    assert server.predict("lin", {"inputs": ROWS}).status == 200
    headers, body = _scrape(server)
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in headers
    text = body.decode()
    # prometheus-client's own Counter/Histogram (validation errors, load failures, load
    # durations) used to add `*_created` families that the hot-path counters lacked.
    assert "_created" not in text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "stageserve_validation_errors",
        "stageserve_model_load_failures",
        "stageserve_heap_reclaims",
    } <= names


def test_metrics_scrape_speaks_openmetrics_and_gzip_when_the_scraper_asks(
    server: ServerProcess,
) -> None:
    import gzip

    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    # What Prometheus sends (scrape_protocols default, abridged).
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
    headers, body = _scrape(server, accept=accept, **{"accept-encoding": "gzip"})
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["content-encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    assert "_created" not in text
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["stageserve_requests"].type == "counter"


def test_stage_loaded_gauge_says_which_stages_serve_their_assigned_version_without_traffic(
    server: ServerProcess,
) -> None:
    loaded = {
        (s.labels["model"], s.labels["stage"]): s.value
        for s in _families(server)["stageserve_stage_loaded"].samples  # type: ignore[attr-defined]
    }
    # "broken" is assigned a corrupt package: assigned, never served; nobody sent it a request.
    assert loaded[("broken", "prod")] == 0
    assert loaded[("cost", "prod")] == loaded[("cost", "staging")] == 1
    assert loaded[("gearbox", "prod")] == loaded[("sm", "prod")] == loaded[("lin", "prod")] == 1
    assert set(loaded) == {
        ("cost", "prod"),
        ("cost", "staging"),
        ("lin", "prod"),
        ("sm", "prod"),
        ("gearbox", "prod"),
        ("broken", "prod"),
    }
