"""The direct lane (gateway/edge/direct.py) through a real server: predict requests answered
from the connection's protocol behave as the ASGI way's, and what the lane leaves to ASGI
(chunked bodies, `Expect: 100-continue`, percent-encoded paths, other routes) still works, on
the same connection, in order.

Raw sockets, because an HTTP client library would not pipeline, nor leave mid-request.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package, save_sklearn_package

pytestmark = pytest.mark.slow

ROWS = example_rows(2)
BODY = json.dumps({"inputs": ROWS}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("direct")
    cache = root / "cache"
    cache.mkdir()
    audit = root / "audit.jsonl"
    write_state(
        cache,
        [
            entry("cost", "prod", "v1.0.0", save_onnx_package(root / "v1")),
            # scikit-learn: over 64 rows a request is scored on the inference pool.
            entry("skl", "prod", "v1.0.0", save_sklearn_package(root / "skl", name="skl")),
        ],
    )
    with ServerProcess(cache, env={"STAGESERVE_AUDIT_PATH": str(audit)}) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        yield server, audit


def _request(
    target: str, body: bytes, *, rid: str, extra: bytes = b"", version: bytes = b"1.1"
) -> bytes:
    return (
        b"POST %s HTTP/%s\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"x-request-id: %s\r\n%scontent-length: %d\r\n\r\n%s"
        % (target.encode(), version, rid.encode(), extra, len(body), body)
    )


def _chunked(target: str, body: bytes, *, rid: str) -> bytes:
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]))
    return (
        b"POST %s HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"x-request-id: %s\r\ntransfer-encoding: chunked\r\n\r\n%s0\r\n\r\n"
        % (target.encode(), rid.encode(), chunks)
    )


class Answer:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def _read_answer(f: Any) -> Answer:
    """One response with a content-length (every answer the gateway gives has one)."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[bytes, bytes] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers[b"content-length"]))
    return Answer(int(status_line.split()[1]), headers, body)


@contextlib.contextmanager
def _connection(server: ServerProcess) -> Iterator[tuple[socket.socket, Any]]:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    f = s.makefile("rb")
    try:
        yield s, f
    finally:
        f.close()
        s.close()


def _records(audit: Path, client_rid: str) -> list[dict[str, Any]]:
    if not audit.exists():
        return []
    lines = (json.loads(line) for line in audit.read_text().splitlines())
    return [r for r in lines if r.get("client_request_id") == client_rid]


def test_pipelined_requests_are_answered_in_order_whichever_way_each_goes(
    served: tuple[ServerProcess, Path],
) -> None:
    server, audit = served
    batch = (
        _request("/predict/cost", BODY, rid="pipe-1")  # the direct lane
        + b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"  # not a predict route: ASGI
        + _chunked("/predict/cost", BODY, rid="pipe-3")  # no content-length: ASGI
        + _request("/predict/%63ost", BODY, rid="pipe-4")  # percent-encoded: ASGI
        + _request("/v2/models/cost/infer", b'{"inputs": []}', rid="pipe-5")  # direct, a 4xx
        + _request("/predict/cost", BODY, rid="pipe-6")
    )
    with _connection(server) as (s, f):
        s.sendall(batch)
        answers = [_read_answer(f) for _ in range(6)]
    assert [a.status for a in answers] == [200, 200, 200, 200, 422, 200]
    assert answers[1].body == b"ok" or answers[1].json() is not None
    rids = [a.headers.get(b"x-client-request-id") for a in answers]
    assert rids == [b"pipe-1", None, b"pipe-3", b"pipe-4", b"pipe-5", b"pipe-6"]
    predictions = [answers[i].json()["predictions"] for i in (0, 2, 3, 5)]
    # The same model and inputs on one path of code each: the answers are equal exactly.
    assert all(p == predictions[0] for p in predictions) and len(predictions[0]) == 2
    for a in (answers[0], answers[2], answers[4]):
        assert a.headers[b"x-model-version"] == b"v1.0.0"
        assert a.headers[b"content-type"] == b"application/json"
    assert "error" in answers[4].json()  # V2's own error shape: {"error": "<message>"}
    # One audit record each, whichever way the request went.
    for rid, status in (("pipe-1", 200), ("pipe-3", 200), ("pipe-5", 422), ("pipe-6", 200)):
        wait_until(lambda rid=rid: len(_records(audit, rid)) == 1, 10, f"the record of {rid}")
        assert _records(audit, rid)[0]["status"] == status


def test_expect_100_continue_is_answered_after_the_interim_response(
    served: tuple[ServerProcess, Path],
) -> None:
    server, _ = served
    head = _request("/predict/cost", b"", rid="expect", extra=b"expect: 100-continue\r\n")
    head = head.replace(b"content-length: 0", b"content-length: %d" % len(BODY))
    with _connection(server) as (s, f):
        s.sendall(head)
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(BODY)
        answer = _read_answer(f)
    assert answer.status == 200
    assert len(answer.json()["predictions"]) == 2


def test_http_1_0_is_answered_then_closed(served: tuple[ServerProcess, Path]) -> None:
    server, _ = served
    with _connection(server) as (s, f):
        s.sendall(_request("/predict/cost", BODY, rid="old", version=b"1.0"))
        answer = _read_answer(f)
        assert answer.status == 200
        assert f.read() == b""  # closed after the answer
    assert answer.headers[b"connection"] == b"close"


def test_a_client_leaving_mid_body_is_recorded_and_the_server_keeps_serving(
    served: tuple[ServerProcess, Path],
) -> None:
    server, audit = served
    with _connection(server) as (s, _):
        s.sendall(_request("/predict/cost", BODY, rid="gone-mid-body")[: -len(BODY) // 2])
    # Nothing to answer, but the request is counted and recorded (status 408: its body never
    # came) like every request.
    wait_until(lambda: len(_records(audit, "gone-mid-body")) == 1, 10, "its audit record")
    assert _records(audit, "gone-mid-body")[0]["status"] == 408
    assert server.predict("cost", {"inputs": ROWS}).status == 200


def test_a_client_leaving_before_its_answer_is_recorded_and_the_server_keeps_serving(
    served: tuple[ServerProcess, Path],
) -> None:
    server, audit = served
    # Large enough to be scored on the inference pool (the answer comes in a later task).
    many = json.dumps({"inputs": ROWS * 1000}).encode()
    with _connection(server) as (s, _):
        s.sendall(_request("/predict/skl", many, rid="gone-before-answer"))
        s.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: len(_records(audit, "gone-before-answer")) == 1, 20, "its audit record")
    assert server.predict("cost", {"inputs": ROWS}).status == 200
    assert "Traceback" not in server.logs()
