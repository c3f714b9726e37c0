"""Shadow traffic through a real server: clients see the primary only; the report is right.

One server shadows prod (a LinearRegression) with dev (a GradientBoostingRegressor) for a
few models configured through the environment; another serves the same cache with shadow
off, to compare the primary's bytes.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.shadow.config import sample_point
from registry_sync.package.read import read_package
from registry_sync.runtimes import load_predictor
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import NUMERIC_FEATURES, example_rows, save_sklearn_package

pytestmark = pytest.mark.slow

FEATURES = NUMERIC_FEATURES[:4]
MODELS = ("ident", "stats", "sampled", "audited")
SHADOW = {m: {"prod": "dev"} for m in MODELS}
Raw = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class Setup:
    on: ServerProcess
    primary: Path
    candidate: Path
    audit: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("shadow")
    cache = base / "cache"
    cache.mkdir()
    primary = save_sklearn_package(base / "linear")
    candidate = save_sklearn_package(base / "gbr", gbr=True)
    entries = []
    for model in MODELS:
        entries += [
            entry(model, "prod", "v1.0.0", primary),
            entry(model, "dev", "v2.0.0", candidate),
        ]
    write_state(cache, entries)
    audit = base / "audit.jsonl"
    env = {
        "STAGESERVE_SHADOW": json.dumps(SHADOW),
        "STAGESERVE_SHADOW_SAMPLE_BY_MODEL": json.dumps({"sampled": 0.3}),
        "STAGESERVE_AUDIT_PATH": str(audit),
        "STAGESERVE_DRAIN_S": "0.1",
    }
    with ServerProcess(cache, env=env) as on:
        wait_until(lambda: on.get("/readyz").status == 200, 60, "ready")
        yield Setup(on, primary, candidate, audit)


def _post(port: int, path: str, body: bytes, rid: str) -> Raw:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={"content-type": "application/json", "x-request-id": rid},
        )
        resp = conn.getresponse()
        # Everything but `date` (the second it was sent in), in the order sent.
        headers = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() != "date"]
        return resp.status, headers, resp.read()
    finally:
        conn.close()


def report(server: ServerProcess, model: str) -> dict[str, Any]:
    served = server.get(f"/models/{model}/shadow")
    assert served.status == 200, served.body
    body: dict[str, Any] = served.body
    return body


def handled(body: dict[str, Any]) -> int:
    """Requests the shadow has finished with: compared, failed or skipped."""
    pairs = body["pairs"]
    return sum(p["requests"] + sum(p["errors"].values()) for p in pairs) + sum(
        body["skipped"].values()
    )


def settle(server: ServerProcess, model: str, n: int) -> dict[str, Any]:
    wait_until(lambda: handled(report(server, model)) >= n, 60, f"{n} shadowed requests")
    body = report(server, model)
    assert handled(body) == n
    return body


def _rows(i: int) -> list[dict[str, float]]:
    """1-5 mtcars rows, varied a little so requests differ."""
    rows = example_rows(1 + i % 5)
    return [{k: v * (1 + 0.01 * (i % 7)) for k, v in row.items()} for row in rows]


def _but_ids(raw: Raw) -> Raw:
    """The answer with the server's own request id (unique per server) and the length it
    changes taken out: everything else must be byte for byte the same."""
    status, headers, body = raw
    rid = dict(headers)["x-request-id"]
    kept = [(k, v) for k, v in headers if k not in ("x-request-id", "content-length")]
    return status, kept, body.replace(rid.encode(), b"<id>")


def test_primary_answers_are_byte_identical_with_shadow_on_and_off(setup: Setup) -> None:
    rows = example_rows(3)
    bodies = [
        {"inputs": rows[:1]},
        {"inputs": rows},
        {"inputs": {k: [r[k] for r in rows] for k in rows[0]}},
        {"dataframe_split": {"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}},
        {"inputs": [{"hp": "fast"}]},  # 422, also unchanged
    ]
    with ServerProcess(setup.on.cache) as off:
        wait_until(lambda: off.get("/readyz").status == 200, 60, "ready")
        answers = []
        for i in range(20):
            body = json.dumps(bodies[i % len(bodies)]).encode()
            rid = f"same-{i}"
            on = _post(setup.on.port, "/predict/ident", body, rid)
            answers.append(on)
            assert _but_ids(on) == _but_ids(_post(off.port, "/predict/ident", body, rid))
        assert report(off, "ident") == {"model": "ident", "config": [], "pairs": []}
    ok = sum(status == 200 for status, _, _ in answers)
    assert ok == 16
    assert dict(answers[0][1])["x-model-version"] == "v1.0.0"
    # The shadow did run on the server that answered the same bytes.
    body = settle(setup.on, "ident", ok)
    assert body["pairs"][0]["requests"] == ok


def test_the_report_matches_differences_computed_in_the_test(setup: Setup) -> None:
    primary = load_predictor(read_package(setup.primary))
    candidate = load_predictor(read_package(setup.candidate))
    diffs, rels = [], []
    for i in range(40):
        rows = _rows(i)
        served = setup.on.predict("stats", {"inputs": rows}, x_request_id=f"stats-{i}")
        assert served.status == 200
        matrix = np.array([[r[f] for f in FEATURES] for r in rows], dtype=np.float64)
        p = primary.predict_matrix(matrix)
        s = candidate.predict_matrix(matrix)
        assert served.body["predictions"] == pytest.approx(p.tolist(), rel=1e-12)
        answered = np.asarray(served.body["predictions"])
        diffs.append(np.abs(answered - s))
        rels.append(np.abs(answered - s) / np.maximum(np.abs(answered), np.abs(s)))
    expected = np.concatenate(diffs)
    body = settle(setup.on, "stats", 40)
    (pair,) = body["pairs"]
    assert (
        pair["stage"],
        pair["primary_version"],
        pair["shadow_stage"],
        pair["shadow_version"],
    ) == (
        "prod",
        "v1.0.0",
        "dev",
        "v2.0.0",
    )
    assert pair["current"] is True
    assert pair["requests"] == 40
    assert pair["values"] == len(expected)
    p50, p99 = np.quantile(expected, [0.5, 0.99])
    got = pair["abs_diff"]
    assert got["mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert got["p50"] == pytest.approx(p50, rel=1e-9)
    assert got["p99"] == pytest.approx(p99, rel=1e-9)
    assert got["max"] == pytest.approx(expected.max(), rel=1e-9)
    assert pair["rel_diff"]["mean"] == pytest.approx(np.concatenate(rels).mean(), rel=1e-9)
    assert pair["labels"] is None
    assert pair["errors"] == dict.fromkeys(pair["errors"], 0)
    for role in ("primary", "shadow"):
        latency = pair["latency_ms"][role]
        assert 0 < latency["p50"] <= latency["p99"]
    metrics = setup.on.get("/metrics").body
    labels = 'model="stats",primary_version="v1.0.0",shadow_version="v2.0.0",stage="prod"'
    assert f"stageserve_shadow_abs_diff_count{{{labels}}} {float(len(expected))}" in metrics


def test_sampling_keeps_the_fraction_and_the_same_request_ids(setup: Setup) -> None:
    ids = [f"sample-{i:04d}" for i in range(1000)]
    body = json.dumps({"inputs": example_rows(1)}).encode()

    def send(chunk: list[str]) -> None:
        for rid in chunk:
            assert _post(setup.on.port, "/predict/sampled", body, rid)[0] == 200

    threads = [threading.Thread(target=send, args=(ids[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = settle(setup.on, "sampled", 1000)
    assert first["config"] == [{"stage": "prod", "shadow_stage": "dev", "sample": 0.3}]
    compared = first["pairs"][0]["requests"]
    assert 250 <= compared <= 350
    assert first["skipped"]["not_sampled"] == 1000 - compared
    send(ids[:100])  # the same ids again: the same ones are shadowed
    settle(setup.on, "sampled", 1100)
    expected = {rid for rid in ids if sample_point(rid) < 0.3}
    wait_until(
        lambda: (
            len(_shadow_records(setup.audit, "sampled"))
            == compared + len(expected & set(ids[:100]))
        ),
        30,
        "shadow audit records",
    )
    # Sampled by the client's id (the same id is in or out on every replica); the shadow
    # record carries it beside the server's ids.
    shadows = _shadow_records(setup.audit, "sampled")
    times = Counter(str(r["client_request_id"]) for r in shadows)
    assert set(times) == expected
    assert all(times[rid] == (2 if rid in ids[:100] else 1) for rid in expected)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _shadow_records(path: Path, model: str) -> list[dict[str, Any]]:
    return [r for r in _records(path) if r.get("shadow") and r["model"] == model]


def test_a_shadow_prediction_leaves_an_audit_record_marked_and_linked(setup: Setup) -> None:
    served = setup.on.predict("audited", {"inputs": example_rows(2)}, x_request_id="audit-1")
    assert served.status == 200
    wait_until(lambda: len(_shadow_records(setup.audit, "audited")) == 1, 30, "shadow record")
    (shadow,) = _shadow_records(setup.audit, "audited")
    rid = served.body["request_id"]
    (primary,) = [r for r in _records(setup.audit) if r["request_id"] == rid]
    assert "shadow" not in primary and "primary_request_id" not in primary
    assert primary["client_request_id"] == "audit-1"
    assert shadow["shadow"] is True
    assert shadow["primary_request_id"] == rid
    assert shadow["request_id"] == f"{rid}#shadow"
    assert shadow["client_request_id"] == "audit-1"
    assert (shadow["stage"], shadow["version"], shadow["status"], shadow["rows"]) == (
        "dev",
        "v2.0.0",
        200,
        2,
    )
    assert shadow["digest"] == read_package(setup.candidate).digest
    assert shadow["input_sha256"] == primary["input_sha256"]
    assert "shadow_error" not in shadow


def test_models_lists_the_shadow_configuration(setup: Setup) -> None:
    models = {m["name"]: m for m in setup.on.get("/models").body["models"]}
    assert models["ident"]["shadow"] == [{"stage": "prod", "shadow_stage": "dev", "sample": 1.0}]
    assert models["sampled"]["shadow"][0]["sample"] == 0.3
    assert setup.on.get("/models/nope/shadow").status == 404
