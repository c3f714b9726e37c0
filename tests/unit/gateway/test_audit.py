"""AuditWriter: every submitted record written once, flushed on close, rotated by size."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import msgspec

from gateway.audit import AuditWriter
from gateway.request_schema import RequestSchema
from tests.unit.gateway.fakes import SIGNATURE


def _entry(i: int, batch: object = None) -> tuple[object, ...]:
    return (
        1_790_000_000.0 + i,
        f"req-{i}",
        "cost",
        "prod",
        "v1",
        "sha256:d",
        200,
        0.0004,
        1,
        batch,
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_record_submitted_before_close_is_written_once(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "audit.jsonl")
    writer.start()
    for i in range(5000):
        writer.submit(_entry(i))  # type: ignore[arg-type]
    writer.close()
    records = _lines(tmp_path / "audit.jsonl")
    assert [r["request_id"] for r in records] == [f"req-{i}" for i in range(5000)]
    assert records[0]["time"] == "2026-09-21T14:13:20.000000Z"
    assert records[0]["latency_ms"] == 0.4


def test_the_input_hash_is_of_the_canonical_inputs_and_inputs_only_when_asked(
    tmp_path: Path,
) -> None:
    batch = RequestSchema(SIGNATURE).decode(msgspec.json.encode({"inputs": [{"hp": 1, "wt": 2}]}))
    canonical = b'{"hp":[1.0],"wt":[2.0]}'
    plain = AuditWriter(tmp_path / "plain.jsonl")
    full = AuditWriter(tmp_path / "full.jsonl", include_inputs=True)
    for writer in (plain, full):
        writer.start()
        writer.submit(_entry(0, batch))  # type: ignore[arg-type]
        writer.close()
    (p,) = _lines(tmp_path / "plain.jsonl")
    (f,) = _lines(tmp_path / "full.jsonl")
    assert p["input_sha256"] == f["input_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert "inputs" not in p
    assert f["inputs"] == {"hp": [1.0], "wt": [2.0]}


def test_the_file_rotates_by_size_keeping_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(path, max_bytes=2000, backups=2)
    writer.start()
    for i in range(200):
        writer.submit(_entry(i))  # type: ignore[arg-type]
        if i % 10 == 9:  # let batches form so rotation happens between them
            while writer.backlog():
                pass
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    ids = [r["request_id"] for name in files[::-1] for r in _lines(tmp_path / name)]
    assert ids == [f"req-{i}" for i in range(200 - len(ids), 200)]


def test_records_also_go_to_a_stream(tmp_path: Path) -> None:
    stream = io.BytesIO()
    writer = AuditWriter(stdout=True, stream=stream)
    writer.start()
    writer.submit(_entry(1))  # type: ignore[arg-type]
    writer.close()
    assert json.loads(stream.getvalue())["request_id"] == "req-1"


def test_a_writer_without_sinks_is_disabled() -> None:
    writer = AuditWriter()
    writer.start()
    assert not writer.enabled
    writer.close()
