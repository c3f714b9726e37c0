"""The HTTP edge through a real server: hostile or broken clients cannot exhaust it.

Raw sockets, because an HTTP client library would not send what these clients send: an endless
header, headers or a body that stop halfway, nothing at all, more sockets than the server has
file descriptors.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package

pytestmark = pytest.mark.slow

BODY = json.dumps({"inputs": example_rows(1)}).encode()
HEAD = (
    b"POST /predict/cost HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edge")
    cache = root / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(root / "v1"))])
    return cache


@contextlib.contextmanager
def _serving(cache: Path, **kwargs: object) -> Iterator[ServerProcess]:
    with ServerProcess(cache, **kwargs) as server:  # type: ignore[arg-type]
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        yield server


def _connect(server: ServerProcess, data: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if data:
        s.sendall(data)
    return s


def _answer(s: socket.socket) -> bytes:
    """Everything the server sent until it closed (b"" when it closed without a word)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def _error_code(raw: bytes) -> str:
    return str(json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"])


def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(65536, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def _predict_status(server: ServerProcess) -> int | str:
    try:
        with _connect(server, HEAD + BODY) as s:
            return _status(_answer(s)) or "closed"
    except ConnectionResetError:
        return "reset"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for s in held:
            s.close()


def test_an_endless_header_is_refused_with_431_and_not_buffered(cache: Path) -> None:
    with _serving(cache) as server, _sockets() as held:
        assert server.proc is not None
        before = _rss_kib(server.proc.pid)
        sent = 0
        # Three clients, each trying 16 MiB of one header line: before the edge's cap, the
        # server buffered all of it (RSS grew by what was sent).
        for _ in range(3):
            s = _connect(server, b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: ")
            held.append(s)
            with contextlib.suppress(OSError):
                for _ in range(256):
                    s.sendall(b"a" * 65536)
                    sent += 65536
        grown_kib = _rss_kib(server.proc.pid) - before
        answers = [_answer(s) for s in held]
        # A few MiB of slack for allocator noise; 48 MiB were offered.
        assert grown_kib < 8 * 1024, f"RSS grew by {grown_kib} KiB"
        assert sent < 3 * 16 * 1_048_576, "the server read every byte of the endless headers"
        refused = [a for a in answers if a]
        assert refused, "no client got an answer"
        for raw in refused:
            assert _status(raw) == 431
            assert _error_code(raw) == "headers_too_large"
        # Too many (small) header fields: 431 too.
        many = b"".join(b"x-h%d: 1\r\n" % i for i in range(150))
        with _connect(server, b"GET /healthz HTTP/1.1\r\nhost: t\r\n" + many + b"\r\n") as s:
            assert _status(_answer(s)) == 431
        assert server.get("/healthz").status == 200


def test_silent_and_half_sent_requests_are_timed_out(cache: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    env = {
        "STAGESERVE_HEADER_TIMEOUT_S": "1",
        "STAGESERVE_BODY_TIMEOUT_S": "1",
        "STAGESERVE_AUDIT_PATH": str(audit),
    }
    with _serving(cache, env=env) as server, _sockets() as held:
        silent = [_connect(server) for _ in range(5)]
        half_headers = [_connect(server, HEAD[:40]) for _ in range(5)]
        half_body = [_connect(server, HEAD + BODY[:5]) for _ in range(5)]
        held.extend(silent + half_headers + half_body)
        # No timing claim: they must be closed at some point (before the edge, never).
        wait_until(lambda: all(_closed_by_server(s) for s in held), 30, "slow clients closed")
        assert [_answer(s) for s in silent] == [b""] * 5
        for s in half_headers:
            assert _status(_answer(s)) == 408
        for s in half_body:
            raw = _answer(s)
            assert _status(raw) == 408
            assert _error_code(raw) == "request_timeout"
        assert _predict_status(server) == 200
        metrics = server.get("/metrics").body
        assert 'stageserve_http_refused_total{reason="body_timeout"} 5.0' in metrics
    # A predict request whose body never came still left its audit record.
    statuses = [json.loads(line)["status"] for line in audit.read_text().splitlines()]
    assert statuses.count(408) == 5


def test_idle_sockets_filling_the_descriptor_table_do_not_lock_clients_out(cache: Path) -> None:
    nofile = 128
    limits = {resource.RLIMIT_NOFILE: (nofile, nofile)}
    with _serving(cache, rlimits=limits) as server, _sockets() as held:
        # As many idle connections as the server has descriptors: before the edge, the next
        # client was reset (accept failed with EMFILE).
        held.extend(_connect(server) for _ in range(nofile))
        assert [_predict_status(server) for _ in range(3)] == [200, 200, 200]


def _waiting_for_body(server: ServerProcess) -> socket.socket:
    """A predict request whose headers the app has read and whose body it now awaits (the
    server says so with `100 Continue`): a busy connection, which is never evicted."""
    s = _connect(server, HEAD.replace(b"\r\n\r\n", b"\r\nexpect: 100-continue\r\n\r\n"))
    assert s.recv(64).startswith(b"HTTP/1.1 100 Continue")
    return s


def test_over_the_connection_cap_requests_get_503_with_retry_after(cache: Path) -> None:
    env = {"STAGESERVE_MAX_CONNECTIONS": "4", "STAGESERVE_RETRY_AFTER_S": "7"}
    with _serving(cache, env=env) as server, _sockets() as held:
        held.extend(_waiting_for_body(server) for _ in range(4))
        with _connect(server, HEAD + BODY) as s:
            raw = _answer(s)
        assert _status(raw) == 503
        assert b"retry-after: 7\r\n" in raw.lower()
        assert _error_code(raw) == "overloaded"
        # The four busy requests were not disturbed.
        for s in held:
            s.sendall(BODY)
            assert _status(s.recv(65536)) == 200
