"""MLflow's scoring routes in process: which model answers, /ping, /version, MLflow's shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.app import create_app, gateway_of
from gateway.settings import Settings
from tests.unit.gateway.fakes import FakeLoader, entry, state

from litestar.testing import AsyncTestClient  # isort: skip

ROWS = {"dataframe_split": {"columns": ["hp", "wt"], "data": [[10.0, 1.0]], "index": [0]}}


async def _exchange(
    settings: Settings, entries: list[Any], calls: list[tuple[str, str, Any, dict[str, str]]]
) -> tuple[list[tuple[int, Any, dict[str, str]]], bytes]:
    app = create_app(settings, loader=FakeLoader())
    out = []
    async with AsyncTestClient(app) as client:
        await gateway_of(app).pool.reconcile(state(*entries))
        for method, path, body, headers in calls:
            content = body if isinstance(body, bytes) else msgspec.json.encode(body)
            resp = await client.request(
                method, path, content=content if body is not None else None, headers=headers
            )
            # /ping answers "\n" as application/json, byte for byte what MLflow answers.
            is_json = "json" in resp.headers.get("content-type", "") and resp.text.strip()
            parsed = resp.json() if is_json else resp.text
            out.append((resp.status_code, parsed, dict(resp.headers)))
        metrics = (await client.get("/metrics")).content
    return out, metrics


def _run(
    entries: list[Any], *calls: tuple[str, str, Any], settings: Settings | None = None
) -> tuple[list[tuple[int, Any, dict[str, str]]], bytes]:
    full = [(m, p, b, {"content-type": "application/json"}) for m, p, b in calls]
    return asyncio.run(_exchange(settings or Settings(), entries, full))


def test_a_gateway_serving_one_model_needs_no_model_parameter() -> None:
    (answer, ping, health, version), _ = _run(
        [entry("cost", "prod", "v2")],
        ("POST", "/invocations", ROWS),
        ("GET", "/ping", None),
        ("GET", "/health", None),
        ("GET", "/version", None),
    )
    # MLflow's answer shape; the fake predicts hp * version number.
    assert answer[:2] == (200, {"predictions": [20.0]})
    assert answer[2]["x-model-version"] == "v2"
    assert ping[0] == health[0] == 200
    assert version[0] == 200 and version[1]


def test_with_several_models_the_query_or_default_model_names_one() -> None:
    entries = [
        entry("cost", "prod", "v2"),
        entry("cost", "dev", "v3"),
        entry("other", "prod", "v4"),
    ]
    (unnamed, named, staged, ping), _ = _run(
        entries,
        ("POST", "/invocations", ROWS),
        ("POST", "/invocations?model=other", ROWS),
        ("POST", "/invocations?model=cost&stage=dev", ROWS),
        ("GET", "/ping?model=cost&stage=nope", None),
    )
    assert unnamed[0] == 404
    assert unnamed[1] == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "no such route; use POST /invocations?model=NAME",
    }
    assert named[1] == {"predictions": [40.0]}
    assert staged[1] == {"predictions": [30.0]}
    assert ping[0] == 503
    (default,), _ = _run(
        entries, ("POST", "/invocations", ROWS), settings=Settings(default_model="other")
    )
    assert default[1] == {"predictions": [40.0]}


def test_params_are_refused_naming_them_and_empty_params_are_fine() -> None:
    (refused, empty), _ = _run(
        [entry("cost", "prod", "v2")],
        ("POST", "/invocations", {**ROWS, "params": {"threshold": 0.5}}),
        ("POST", "/invocations", {**ROWS, "params": {}}),
    )
    assert refused[0] == 422
    assert refused[1]["error_code"] == "BAD_REQUEST"
    assert refused[1]["message"].startswith("$.params: this model takes no params")
    assert refused[2]["x-model-version"] == "v2"
    assert empty[:2] == (200, {"predictions": [20.0]})


def test_extra_columns_are_ignored_as_mlflow_does_and_counted() -> None:
    split = {"columns": ["colour", "hp", "wt"], "data": [["red", 10.0, 1.0]]}
    records = [{"hp": 10.0, "wt": 1.0, "colour": "red"}]
    (by_split, by_records, by_columns, bad), metrics = _run(
        [entry("cost", "prod", "v2")],
        ("POST", "/invocations", {"dataframe_split": split}),
        ("POST", "/invocations", {"dataframe_records": records}),
        ("POST", "/invocations", {"instances": {"hp": [10.0], "wt": [1.0], "colour": ["red"]}}),
        ("POST", "/invocations", {"dataframe_split": {**split, "data": [["red", "x", 1.0]]}}),
    )
    assert by_split[:2] == by_records[:2] == by_columns[:2] == (200, {"predictions": [20.0]})
    # An error still names the position the client sent, extra columns and all.
    assert bad[1]["message"] == "$.dataframe_split.data[0][1]: expected number, got string"
    assert b'stageserve_extra_columns_total{model="cost"} 3.0' in metrics
    (strict,), _ = _run(
        [entry("cost", "prod", "v2")], ("POST", "/predict/cost", {"inputs": records})
    )
    assert strict[0] == 422  # /predict stays strict: an unknown field is a mistake there


def test_csv_bodies_are_read_by_the_signature() -> None:
    calls = [
        (
            "POST",
            "/invocations",
            b"hp,wt,colour\n10,1.0,red\n20,2.5,blue\n",
            {"content-type": "text/csv"},
        ),
        ("POST", "/invocations", b"hp,wt\n10,heavy\n", {"content-type": "text/csv; charset=utf-8"}),
        ("POST", "/invocations", b"<xml/>", {"content-type": "application/xml"}),
    ]
    (ok, bad, xml), _ = asyncio.run(_exchange(Settings(), [entry("cost", "prod", "v2")], calls))
    assert ok[:2] == (200, {"predictions": [20.0, 40.0]})
    assert bad[:2] == (
        422,
        {"error_code": "BAD_REQUEST", "message": "csv row 1, column 'wt': expected a double"},
    )
    assert xml[0] == 415 and xml[1]["error_code"] == "BAD_REQUEST"
