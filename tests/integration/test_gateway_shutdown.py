"""SIGTERM under load, as Kubernetes sends it: readiness fails first, nothing answered fails."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.integration.load import LoadStream
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package

DRAIN_S = 1.5


def test_sigterm_fails_readiness_first_serves_through_the_drain_and_exits_zero(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    audit = tmp_path / "audit.jsonl"
    journal = tmp_path / "journal.jsonl"
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(tmp_path / "v1"))])
    server = ServerProcess(
        cache,
        args=[
            "--drain-s",
            str(DRAIN_S),
            "--audit-path",
            str(audit),
            "--journal-path",
            str(journal),
        ],
    )
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        body = {"inputs": example_rows(1)}
        with LoadStream(server.port, "/predict/cost", body, clients=4) as stream:
            wait_until(lambda: len(stream.answers) >= 100, 60, "answers before SIGTERM")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(lambda: server.get("/readyz").status == 503, 10, "readiness to fail")
            not_ready_at = time.monotonic()
            # Still serving while the endpoints update propagates.
            assert server.predict("cost", body).status == 200
            code = server.proc.wait(60)
            answers = stream.stop()
    finally:
        server.stop()
    assert code == 0, server.logs()
    assert not_ready_at - signalled < DRAIN_S
    answered = [a for a in answers if a.status != 0]
    assert all(a.status == 200 for a in answered), {a.status for a in answered}
    # Connections are only refused or cut once the drain period is over.
    early_errors = [a for a in answers if a.status == 0 and a.sent_at < signalled + DRAIN_S]
    assert early_errors == []
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    ids = {r["request_id"] for r in records}
    assert all(a.body is not None and a.body["request_id"] in ids for a in answered)
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["kind"] for e in events][:1] == ["activated"]
