"""Audit records through a real server: one per answered request, none lost on SIGTERM."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.integration.load import LoadStream
from tests.integration.server import ServerProcess, entry, wait_until, write_state
from tests.models import example_rows, save_onnx_package

ROWS = example_rows(2)


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_answered_request_has_exactly_one_record_after_sigterm(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    audit = tmp_path / "audit" / "audit.jsonl"
    write_state(cache, [entry("cost", "prod", "v1.0.0", save_onnx_package(tmp_path / "v1"))])
    server = ServerProcess(
        cache, env={"STAGESERVE_AUDIT_PATH": str(audit), "STAGESERVE_DRAIN_S": "0.3"}
    )
    server.start()
    try:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "ready")
        rows = server.predict("cost", {"inputs": ROWS}, x_request_id="rows-1")
        cols = server.predict(
            "cost", {"inputs": {k: [r[k] for r in ROWS] for k in ROWS[0]}}, x_request_id="cols-1"
        )
        bad = server.predict("cost", {"inputs": [{"hp": "x"}]}, x_request_id="bad-1")
        missing = server.predict("nope", {"inputs": ROWS}, x_request_id="missing-1")
        with LoadStream(server.port, "/predict/cost", {"inputs": ROWS[:1]}, clients=4) as stream:
            wait_until(lambda: len(stream.answers) >= 200, 60, "200 answers")
            # SIGTERM while the clients are still sending: the server drains, then the app
            # flushes, and a clean shutdown exits 0.
            assert server.stop() == 0
        answers = stream.stop()
    finally:
        server.stop()
    assert "Application shutdown complete" in server.logs()
    records = _records(audit)
    ids = Counter(str(r["request_id"]) for r in records)
    answered = [a for a in answers if a.status == 200]
    assert len(answered) >= 200
    for a in answered:
        assert a.body is not None
        assert ids[a.body["request_id"]] == 1
    assert all(n == 1 for n in ids.values())
    # Every request the server answered (the stream's and the four above) left a record.
    assert len(records) == len(answered) + 4
    # The server keys each record by its own id; the client's x-request-id is kept beside it.
    by_id = {r["client_request_id"]: r for r in records if "client_request_id" in r}
    assert by_id["rows-1"]["request_id"] == rows.body["request_id"] != "rows-1"
    assert (rows.status, cols.status, bad.status, missing.status) == (200, 200, 422, 404)
    first = by_id["rows-1"]
    assert first["model"] == "cost"
    assert first["stage"] == "prod"
    assert first["version"] == "v1.0.0"
    assert str(first["digest"]).startswith("sha256:")
    assert first["status"] == 200
    assert first["rows"] == 2
    assert float(str(first["latency_ms"])) > 0
    # The hash is of the decoded inputs: rows and columns with the same values agree.
    assert first["input_sha256"] == by_id["cols-1"]["input_sha256"]
    assert "inputs" not in first
    assert by_id["bad-1"]["status"] == 422
    assert by_id["bad-1"]["input_sha256"] is None
    assert by_id["missing-1"]["version"] is None
