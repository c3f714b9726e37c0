"""Overload through a real server: past a model's limit of concurrent inferences a request is
answered 503 `model_overloaded` + Retry-After at once, past its inference timeout 504
`inference_timeout`, on /predict and on V2 alike, each counted in
stageserve_inference_refused_total; the admitted requests are answered as usual."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import save_sklearn_package

ROW = {"hp": 110.0, "wt": 2.62, "disp": 160.0, "qsec": 16.46}
V2 = {
    "inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [v]} for f, v in ROW.items()]
}
CLIENTS = 8


class Clients:
    """CLIENTS keep-alive clients asking `gbr` without pause, half on /predict, half on V2."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[str, int, dict[str, str], Any]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def statuses(self) -> list[int]:
        with self.lock:
            return [a[1] for a in self.answers]

    def _run(self, client: int) -> None:
        path, body = (
            ("/predict/gbr", {"inputs": [ROW]}) if client % 2 else ("/v2/models/gbr/infer", V2)
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            resp = conn.getresponse()
            answer = (path, resp.status, {k.lower(): v for k, v in resp.getheaders()},
                      json.loads(resp.read()))  # fmt: skip
            with self.lock:
                self.answers.append(answer)
        conn.close()


def _metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_past_the_limit_and_the_timeout_requests_are_answered_not_queued(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    gbr = save_sklearn_package(tmp_path / "gbr", name="gbr", gbr=True)
    lin = save_sklearn_package(tmp_path / "lin", name="lin")
    write_state(cache, [entry("gbr", "prod", "v1.0.0", gbr), entry("lin", "prod", "v1.0.0", lin)])
    env = {
        # gbr: one request at a time; lin: a timeout no model call can meet (a microsecond).
        "STAGESERVE_INFERENCE_LIMITS": json.dumps(
            {"gbr": {"max_concurrent": 1}, "lin": {"timeout_s": 1e-6}}
        ),
        "STAGESERVE_RETRY_AFTER_S": "7",
    }
    with ServerProcess(cache, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        with Clients(server.port) as clients:
            wait_until(
                lambda: (s := clients.statuses()).count(503) >= 20 and s.count(200) >= 20,
                120,
                "both admitted and refused requests",
            )
        late = [server.predict("lin", {"inputs": [ROW]}) for _ in range(3)]
        late_v2 = server.request(
            "POST", "/v2/models/lin/infer", json.dumps(V2).encode(),
            {"content-type": "application/json"},
        )  # fmt: skip
        metrics = server.get("/metrics").body
    answers = clients.answers
    assert {a[1] for a in answers} == {200, 503}
    refused = [a for a in answers if a[1] == 503]
    assert {a[0] for a in refused} == {"/predict/gbr", "/v2/models/gbr/infer"}
    for path, _, headers, body in refused:
        assert headers["retry-after"] == "7"
        if path.startswith("/predict"):
            assert body["error"]["code"] == "model_overloaded"
        else:  # V2's error shape: one message
            assert "limit of 1 requests" in body["error"]
    for path, status, headers, body in answers:
        if status == 200:
            assert headers["x-model-version"] == "v1.0.0"
            outputs = body["predictions"] if path.startswith("/predict") else body["outputs"]
            assert len(outputs) == 1
    assert [r.status for r in late] == [504] * 3
    assert all(r.body["error"]["code"] == "inference_timeout" for r in late)
    assert late_v2.status == 504
    counted = _metric(
        metrics, 'stageserve_inference_refused_total{model="gbr",reason="model_overloaded"}'
    )
    assert counted == len(refused)
    timed_out = _metric(
        metrics, 'stageserve_inference_refused_total{model="lin",reason="inference_timeout"}'
    )
    assert timed_out == 4
    assert _metric(
        metrics, 'stageserve_requests_total{model="gbr",stage="prod",status="503",version="v1.0.0"}'
    ) == len(refused)
