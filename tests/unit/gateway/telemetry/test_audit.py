"""AuditWriter: every submitted record written once, flushed on stop, rotated by size."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import io
import json
import os
import weakref
from pathlib import Path

import msgspec
import pytest

from gateway.schema.request_schema import RequestSchema
from gateway.telemetry import audit_file
from gateway.telemetry.audit import AuditWriter, Entry
from gateway.telemetry.audit_file import RotatingFile
from tests.unit.gateway.fakes import SIGNATURE


def _entry(i: int, batch: object = None, principal: str | None = None) -> Entry:
    return (
        1_790_000_000.25 + i,
        f"req-{i}",
        "cost",
        "prod",
        "v1",
        "sha256:d",
        200,
        4e-4,
        1,
        batch,
        principal,
        None,
        [20.5 + i],
    )  # type: ignore[return-value]


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_record_submitted_while_running_is_written_once_by_stop(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "a" / "audit.jsonl", flush_interval_s=0.001)

    async def run() -> None:
        writer.open()
        task = asyncio.create_task(writer.run())
        for i in range(5000):
            writer.submit(_entry(i))
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the flusher take some batches meanwhile
        await writer.stop(task)

    asyncio.run(run())
    records = _lines(tmp_path / "a" / "audit.jsonl")
    assert [r["request_id"] for r in records] == [f"req-{i}" for i in range(5000)]
    assert records[0]["time"] == "2026-09-21T14:13:20.250000Z"
    assert records[0]["latency_ms"] == 0.4
    assert writer.written == 5000


def test_the_input_hash_is_of_the_canonical_inputs_and_inputs_only_when_asked(
    tmp_path: Path,
) -> None:
    batch = RequestSchema(SIGNATURE).decode(msgspec.json.encode({"inputs": [{"hp": 1, "wt": 2}]}))
    canonical = b'{"hp":[1.0],"wt":[2.0]}'
    for name, include in (("plain", False), ("full", True)):
        writer = AuditWriter(tmp_path / f"{name}.jsonl", include_inputs=include)
        writer.open()
        writer.submit(_entry(0, batch))
        writer.close()
    (p,) = _lines(tmp_path / "plain.jsonl")
    (f,) = _lines(tmp_path / "full.jsonl")
    assert p["input_sha256"] == f["input_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert "inputs" not in p
    assert f["inputs"] == {"hp": [1.0], "wt": [2.0]}


def test_the_file_rotates_by_size_keeping_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(path, max_bytes=2000, backups=2)
    writer.open()
    for i in range(200):
        writer.submit(_entry(i))
        if i % 5 == 4:  # batches of 5 lines stay under max_bytes
            writer.flush()
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    ids = [r["request_id"] for name in files[::-1] for r in _lines(tmp_path / name)]
    assert ids == [f"req-{i}" for i in range(200 - len(ids), 200)]


def test_records_also_go_to_a_stream() -> None:
    stream = io.BytesIO()
    writer = AuditWriter(stdout=True, stream=stream)
    writer.open()
    writer.submit(_entry(1))
    writer.close()
    assert json.loads(stream.getvalue())["request_id"] == "req-1"


def test_a_record_names_its_principal_only_when_auth_gave_one() -> None:
    stream = io.BytesIO()
    writer = AuditWriter(stdout=True, stream=stream)
    writer.submit(_entry(1, principal="pricing-svc"))
    writer.submit(_entry(2))
    writer.close()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["principal"] == "pricing-svc"
    assert "principal" not in second


def test_a_full_backlog_is_reported_so_requests_wait_instead_of_dropping() -> None:
    writer = AuditWriter(stdout=True, stream=io.BytesIO(), queue_max=3)
    for i in range(3):
        writer.submit(_entry(i))
    assert writer.is_full()
    writer.flush()
    assert not writer.is_full()
    assert writer.written == 3


def test_a_writer_without_sinks_is_disabled() -> None:
    assert not AuditWriter().enabled


def test_a_submitted_request_keeps_none_of_its_objects_alive() -> None:
    # Held until the flush, a request's batch, arrays and predictions were promoted to the
    # collector's oldest generation and made its full collections (~130 ms at c16) the p99.
    writer = AuditWriter(stdout=True, stream=io.BytesIO())
    batch = RequestSchema(SIGNATURE).decode(
        msgspec.json.encode({"inputs": [{"hp": 110, "wt": 2.62}]})
    )
    assert batch.matrix is not None
    matrix = weakref.ref(batch.matrix)
    predictions = [20.5]
    writer.submit((*_entry(1)[:9], batch, None, None, predictions))  # type: ignore[arg-type]
    del batch
    assert matrix() is None  # freed with the request, not held for the flush
    assert not any(gc.is_tracked(line) for line in writer._pending)
    assert all(r is not predictions for r in gc.get_referents(*writer._pending))


def test_a_flush_writes_in_chunks_and_a_chunk_refused_leaves_no_part_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One write of a whole flush held the writer thread in the kernel for 10-25 ms while the
    # event loop waited for the core; chunks bound that. A refused chunk must still leave the
    # file as it was (the batch is retried whole).
    path = tmp_path / "audit.jsonl"
    file = RotatingFile(path, max_bytes=10**9, backups=1)
    real_write = os.write
    sizes: list[int] = []
    refuse_at = [-1]

    def recording_write(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        if len(sizes) == refuse_at[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(audit_file.os, "write", recording_write)
    first = b"".join(b'{"request_id":"a-%06d"}\n' % i for i in range(20_000))
    file.write(first)
    assert path.read_bytes() == first
    assert len(sizes) > 1 and max(sizes) <= 65_536
    sizes.clear()
    refuse_at[0] = 3
    with pytest.raises(OSError):
        file.write(first)
    assert path.read_bytes() == first  # the two chunks written before the refusal are cut
    file.close()
