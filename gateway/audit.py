"""The audit trail: one JSON line per predict request, written by a background thread.

The event loop encodes each line (a few µs: canonical inputs, sha256, msgspec) and appends it
to a deque; a writer thread wakes every `flush_interval_s` (or when a batch is full) and only
joins and writes bytes, which releases the GIL. An earlier design encoded in the writer
thread: that thread then held the GIL while onnxruntime (which releases it) ran, and every
request waited for the GIL to come back; p50 latency rose by ~50 %. Records are never
dropped: past `queue_max` pending lines, requests wait (asynchronously) for the writer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

import msgspec

from gateway.request_schema import InputBatch

__all__ = ["AuditRecord", "AuditWriter"]

log = logging.getLogger("stageserve.audit")
_BATCH = 4096


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of the audit file (the format is documented in the README)."""

    time: str
    request_id: str
    model: str
    stage: str
    version: str | None
    digest: str | None
    status: int
    latency_ms: float
    rows: int
    # sha256 of the canonical JSON of the decoded inputs ({name: [values]} in signature order),
    # so rows, columns and MLflow shapes with the same values hash the same; None when the
    # request never decoded (4xx before validation).
    input_sha256: str | None
    inputs: dict[str, Any] | None = None


# (unix time, request id, model, stage, version, digest, status, latency s, rows, inputs)
Entry = tuple[
    float, str, str, str, "str | None", "str | None", int, float, int, "InputBatch | None"
]


class AuditWriter:
    """Queue + writer thread; `submit` from the event loop, `close` on shutdown flushes all."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        stdout: bool = False,
        max_bytes: int = 100 * 1_048_576,
        backups: int = 5,
        include_inputs: bool = False,
        queue_max: int = 100_000,
        stream: IO[bytes] | None = None,
        flush_interval_s: float = 0.05,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.enabled = self.path is not None or stdout
        self.max_bytes = max_bytes
        self.backups = backups
        self.include_inputs = include_inputs
        self.queue_max = queue_max
        self._stream = stream if stream is not None else (sys.stdout.buffer if stdout else None)
        self.flush_interval_s = flush_interval_s
        # deque.append / popleft are atomic: the loop appends, the writer pops, no lock.
        self._pending: deque[bytes] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._encoder = msgspec.json.Encoder()
        self._file: IO[bytes] | None = None
        self._size = 0
        self._thread: threading.Thread | None = None
        self.written = 0

    # -- event loop side ----------------------------------------------------------------

    def submit(self, entry: Entry) -> None:
        self._pending.append(self._line(entry))
        if len(self._pending) >= _BATCH:
            self._wake.set()

    def backlog(self) -> int:
        return len(self._pending)

    def is_full(self) -> bool:
        return len(self._pending) >= self.queue_max

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        self._thread = threading.Thread(target=self._run, name="stageserve-audit", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write every queued record, then stop the thread and close the file."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing is appended after it
            pending = self._pending
            lines = []
            while pending:
                lines.append(pending.popleft())
            if lines:
                self._write(b"".join(lines), len(lines))
            if stopping and not pending:
                return

    def _line(self, entry: Entry) -> bytes:
        t, rid, model, stage, version, digest, status, latency_s, rows, batch = entry
        sha = inputs = None
        if batch is not None:
            canonical = batch.canonical_json()
            sha = hashlib.sha256(canonical).hexdigest()
            if self.include_inputs:
                inputs = msgspec.json.decode(canonical)
        record = AuditRecord(
            time=dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z",
            request_id=rid,
            model=model,
            stage=stage,
            version=version,
            digest=digest,
            status=status,
            latency_ms=round(latency_s * 1000, 3),
            rows=rows,
            input_sha256=sha,
            inputs=inputs,
        )
        return self._encoder.encode(record) + b"\n"

    def _write(self, data: bytes, count: int) -> None:
        try:
            if self._file is not None:
                if self._size and self._size + len(data) > self.max_bytes:
                    self._rotate()
                self._file.write(data)
                self._file.flush()
                self._size += len(data)
            if self._stream is not None:
                self._stream.write(data)
                self._stream.flush()
            self.written += count
        except OSError as exc:
            log.error("audit write failed: %s (%d records)", exc.strerror, count)

    def _rotate(self) -> None:
        assert self._file is not None and self.path is not None
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = self.path.open("ab")
        self._size = 0
