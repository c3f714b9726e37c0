"""The audit trail on a disk that fills up, through a real server (see small_disk.py).

Before: with the audit file on a full disk, requests kept being answered while their records
were lost (1,352 answered, 409 written, one line torn), shutdown raised, and only a log line
said so. Now every failed write is counted and shown, no line is ever torn, the records held
through the outage are written when space returns, and `audit_failure_mode` decides whether
predict answers meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import Served, ServerProcess, entry, wait_until, write_state
from tests.integration.small_disk import SmallDisk
from tests.models import example_rows, save_onnx_package

pytestmark = pytest.mark.slow

ROWS = example_rows(2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit-disk")
    cache = root / "cache"
    cache.mkdir()
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(root / "v1"))])
    return cache


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with SmallDisk(tmp_path / "disk") as small:
        yield small


def _records(path: Path) -> list[dict[str, object]]:
    """Every line of the audit file, each of which must be whole JSON (no torn line)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the last line is torn"
    return [json.loads(line) for line in data.splitlines()]


def _metric(server: ServerProcess, name: str) -> float:
    for family in text_string_to_metric_families(server.get("/metrics").body):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


class Client:
    """Sends predict requests and remembers every request id answered 200."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.answered: list[str] = []

    def send(self) -> Served:
        r = self.server.predict("cost", {"inputs": ROWS})
        if r.status == 200:
            self.answered.append(str(r.body["request_id"]))
        return r


def _start(cache: Path, disk: SmallDisk, mode: str, **env: str) -> tuple[ServerProcess, Path]:
    audit = disk.path / "audit.jsonl"
    server = ServerProcess(
        cache,
        env={
            "STAGESERVE_AUDIT_PATH": str(audit),
            "STAGESERVE_AUDIT_FAILURE_MODE": mode,
            **{f"STAGESERVE_{k.upper()}": v for k, v in env.items()},
        },
    )
    server.start()
    assert server.proc is not None
    disk.attach(server.proc.pid, audit)
    wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
    return server, audit


def test_fail_closed_refuses_while_records_cannot_be_written_and_loses_none(
    cache: Path, disk: SmallDisk
) -> None:
    server, audit = _start(cache, disk, "fail_closed")
    client = Client(server)
    try:
        assert all(client.send().status == 200 for _ in range(10))
        wait_until(lambda: audit.exists() and len(_records(audit)) == 10, 30, "10 records")
        disk.fill()
        # Requests answered before the first write failed are held, not lost; from the
        # failed write on, predict refuses.
        wait_until(lambda: client.send().status == 503, 30, "a 503 once writes fail")
        refused = client.send()
        assert refused.status == 503
        assert refused.body["error"]["code"] == "audit_unavailable"
        assert refused.headers["retry-after"] == "5"
        health = server.get("/models").body["audit"]
        assert health["state"] == "failing"
        assert health["mode"] == "fail_closed"
        assert health["write_failures"] >= 1
        assert health["last_error"]
        ready = server.get("/readyz")
        assert ready.status == 503
        assert ready.body["error"]["details"]["audit"]["state"] == "failing"
        assert _metric(server, "stageserve_audit_write_failures_total") >= 1
        assert _metric(server, "stageserve_audit_failing") == 1
        _records(audit)  # still no torn line
        disk.free()
        wait_until(lambda: client.send().status == 200, 30, "answers once space returns")
        wait_until(
            lambda: server.get("/models").body["audit"]["backlog"] == 0, 30, "backlog written"
        )
        assert server.get("/readyz").status == 200
    finally:
        assert server.stop() == 0
    written = {r["request_id"] for r in _records(audit) if r["status"] == 200}
    assert written == set(client.answered)
    assert len(client.answered) > 11


def test_fail_open_answers_through_a_full_disk_and_counts_every_record_lost(
    cache: Path, disk: SmallDisk
) -> None:
    server, audit = _start(cache, disk, "fail_open", audit_queue_max="20")
    client = Client(server)
    try:
        assert all(client.send().status == 200 for _ in range(10))
        wait_until(lambda: audit.exists() and len(_records(audit)) == 10, 30, "10 records")
        disk.fill()
        # Answered while the first failed write is held (a page of slack may take some)...
        wait_until(
            lambda: (
                client.send().status == 200
                and server.get("/models").body["audit"]["state"] == "failing"
            ),
            30,
            "failing",
        )
        # ...and more than `audit_queue_max` (20) records held: the rest are dropped, counted.
        assert all(client.send().status == 200 for _ in range(40))
        assert server.get("/readyz").status == 200  # fail_open: still ready
        disk.free()
        wait_until(lambda: server.get("/models").body["audit"]["state"] == "ok", 30, "recovered")
        wait_until(lambda: server.get("/models").body["audit"]["backlog"] == 0, 30, "written")
        dropped = _metric(server, "stageserve_audit_records_dropped_total")
        written = {r["request_id"] for r in _records(audit) if r["status"] == 200}
        # Every answered request is either written or counted as lost: nothing silent.
        assert written <= set(client.answered)
        assert len(client.answered) - len(written) == dropped > 0
        # The disk fills again and the server is stopped before space returns: it exits
        # cleanly and says how many records it could not write.
        disk.fill()
        assert all(client.send().status == 200 for _ in range(30))  # over a page of slack
    finally:
        code = server.stop()
    assert code == 0
    assert "could not be written before shutdown" in server.logs()
    _records(audit)
