"""Adaptive batching through a real server: each caller its own rows, stamp and audit record,
one caller's failure never another's, and a swap in the middle never mixes versions."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry_sync.package.read import read_package
from registry_sync.runtimes import load_predictor
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import save_sklearn_package

FEATURES = ("hp", "wt", "disp", "qsec")
CLIENTS = 8


def _row(client: int, n: int) -> dict[str, float]:
    # Distinct values per client and request, inside mtcars' range (the trees split there).
    return {"hp": 60.0 + (client * 37 + n) % 250, "wt": 1.5 + client * 0.4, "disp": 120.0 + n % 300,
            "qsec": 15.0 + client * 0.5}  # fmt: skip


class Clients:
    """CLIENTS threads, each on its own keep-alive connection, each sending its own rows (one
    or two per request); client 0 sometimes sends a null the model refuses."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.answers: list[tuple[list[dict[str, Any]], int, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CLIENTS)
        ]

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def _run(self, client: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        n = 0
        while not self.stop.is_set():
            n += 1
            rows = [_row(client, n)] if n % 3 else [_row(client, n), _row(client, n + 1000)]
            if client == 0 and n % 5 == 0:
                rows = [{**rows[0], "hp": None}]
            conn.request(
                "POST", "/predict/gbr", json.dumps({"inputs": rows}),
                {"content-type": "application/json"},
            )  # fmt: skip
            resp = conn.getresponse()
            body = json.loads(resp.read())
            headers = {k.lower(): v for k, v in resp.getheaders()}
            with self.lock:
                self.answers.append((rows, resp.status, headers, body))
        conn.close()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_batched_callers_get_their_own_rows_stamps_and_audit_records_across_a_swap(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    audit = tmp_path / "audit.jsonl"
    packages = {
        "v1.0.0": save_sklearn_package(tmp_path / "v1", name="gbr", gbr=True),
        "v2.0.0": save_sklearn_package(tmp_path / "v2", name="gbr", gbr=True, offset=100),
    }
    models = {v: load_predictor(read_package(p)) for v, p in packages.items()}
    write_state(cache, [entry("gbr", "prod", "v1.0.0", packages["v1.0.0"])])
    env = {
        "STAGESERVE_BATCHING": json.dumps({"gbr": {"max_batch_size": 16, "max_wait_us": 5000}}),
        "STAGESERVE_ALLOW_NON_FINITE": "true",
    }
    with ServerProcess(cache, env=env, args=["--audit-path", str(audit)]) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        with Clients(server.port) as clients:
            wait_until(lambda: clients.count() >= 150, 60, "answers from v1")
            write_state(cache, [entry("gbr", "prod", "v2.0.0", packages["v2.0.0"])])
            wait_until(
                lambda: any(a[2].get("x-model-version") == "v2.0.0" for a in list(clients.answers)),
                60,
                "answers from v2",
            )
            seen = clients.count()
            wait_until(lambda: clients.count() >= seen + 150, 60, "more answers from v2")
        metrics = server.get("/metrics").body
    answers = clients.answers
    records = {
        r["request_id"]: r for r in map(json.loads, audit.read_text().splitlines())
    }  # the server flushed its audit file on SIGTERM (ServerProcess.stop)
    refused = [a for a in answers if any(r["hp"] is None for r in a[0])]
    assert refused and all(a[1] == 500 for a in refused)
    assert all(a[3]["error"]["code"] == "inference_failed" for a in refused)
    answered = [a for a in answers if a not in refused]
    assert {a[1] for a in answered} == {200}
    assert {a[3]["version"] for a in answered} == {"v1.0.0", "v2.0.0"}
    for rows, _, headers, body in answered:
        version = headers["x-model-version"]
        assert body["version"] == version
        matrix = [[r[f] for f in FEATURES] for r in rows]
        expected = models[version].predict_matrix(np.array(matrix, dtype=np.float64)).tolist()
        # The same trees summed in the same order for each row, whatever else shared the call:
        # equal up to float rounding at most (1e-9 relative, far below the 100 between versions).
        assert body["predictions"] == pytest.approx(expected, rel=1e-9)
        record = records[body["request_id"]]
        assert (record["version"], record["digest"], record["rows"]) == (
            version,
            headers["x-model-digest"],
            len(rows),
        )
    for _, status, headers, _ in refused:
        assert records[headers["x-request-id"]]["status"] == status
    # Every request went through the batcher, and some model calls answered several.
    calls = _metric(metrics, 'stageserve_batch_requests_count{model="gbr"}')
    batched = _metric(metrics, 'stageserve_batch_requests_sum{model="gbr"}')
    assert batched == len(answers)
    assert calls < batched
