"""The file store's SQLite index: it catches up with appends and rotation, never duplicates or
skips a record, and can be deleted and rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

from registry_sync.history.files import FileHistory, audit_files

T0 = 1_790_000_000.0


def _record(i: int, *, version: str = "v1", shadow: bool = False, status: int = 200) -> bytes:
    t = T0 + i
    stamp = f"2026-09-21T{int(t % 86400 // 3600):02d}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}"
    return (
        json.dumps(
            {
                "time": f"{stamp}.250000Z",
                "request_id": f"r-{i}" + ("#shadow" if shadow else ""),
                "model": "cost",
                "stage": "prod",
                "version": version,
                "digest": "sha256:d",
                "status": status,
                "latency_ms": 0.4,
                "rows": 1,
                "input_sha256": None,
                "predictions": [20.0 + i],
                "principal": "team-a" if i % 2 else "team-b",
                **({"shadow": True, "primary_request_id": f"r-{i}"} if shadow else {}),
            }
        ).encode()
        + b"\n"
    )


def _count(h: FileHistory) -> int:
    return sum(u.requests for u in h.usage(None, None))


def test_appends_and_rotation_are_indexed_once(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"".join(_record(i) for i in range(3)))
    h = FileHistory(audit)
    assert _count(h) == 3
    # A batch being written (no newline yet) waits for the next query.
    with audit.open("ab") as f:
        f.write(_record(3) + _record(4)[:20])
    assert _count(h) == 4
    with audit.open("ab") as f:
        f.write(_record(4)[20:])
    assert _count(h) == 5
    # Rotation: the file becomes .1 (same inode, read up to where it was), a new one starts.
    audit.rename(tmp_path / "audit.jsonl.1")
    audit.write_bytes(_record(5) + _record(6))
    assert [p.name for p in audit_files(audit)] == ["audit.jsonl.1", "audit.jsonl"]
    assert _count(h) == 7
    assert h.audit_record("r-6") is not None
    assert [r.request_id for r in h.audit_records(since=T0 + 2, until=T0 + 6)] == [
        "r-2",
        "r-3",
        "r-4",
        "r-5",
    ]


def test_the_index_is_rebuilt_from_the_files_when_deleted(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"".join(_record(i) for i in range(4)))
    h = FileHistory(audit)
    assert _count(h) == 4
    h.close()
    (tmp_path / "history.sqlite").unlink()
    rebuilt = FileHistory(audit)
    assert _count(rebuilt) == 4
    assert rebuilt.audit_record("r-2").predictions == [22.0]  # type: ignore[union-attr]


def test_counts_leave_out_shadow_refused_and_as_of_records(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    as_of = json.loads(_record(9))
    as_of.update(as_of="2026-09-01T00:00:00Z", basis="served")
    audit.write_bytes(
        _record(0)
        + _record(0, shadow=True)
        + _record(1, status=422)
        + _record(2, version="v2")
        + json.dumps(as_of).encode()
        + b"\n"
    )
    h = FileHistory(audit)
    counts = h.prediction_counts("cost", T0, T0 + 3600, 60.0)
    assert [(c.version, c.requests, c.bucket) for c in counts] == [("v1", 1, T0), ("v2", 1, T0)]
    assert [r.request_id for r in h.audit_by_client_id("cost", "missing")] == []
