"""The audit trail: one JSON line per predict request, off the request path, none lost.

Each request's record is encoded when it is submitted (~4 µs on the event loop, after the
answer is sent: canonical inputs, sha256, msgspec) and its bytes wait in a list; every
`flush_interval_s` a flusher task joins them and hands them to one worker thread for the
write, which releases the GIL and writes in chunks (audit_file.py). Measured against the
alternatives (benchmarks/RESULTS.md, "issue 17: the audit tail"): entries held until the
flush (a tuple, the InputBatch, its arrays, the predictions) survived into the collector's
oldest generation and made its full collections (~130 ms each) the c16 p99; encoding them in
slices on the loop kept a flush running for hundreds of ms at c16 (one slice per loop turn)
and freed its entries all at once; a thread encoding them holds the GIL against the loop; a
process needs the entries serialised on the loop and competes for the core. Encoding at
submit holds nothing the collector tracks and leaves no flush work on the loop but a join.
Past `queue_max` pending lines, requests wait (asynchronously) for the writer instead of
dropping records; `stop()` writes the rest. A write that fails (full disk) is kept and
retried (audit_sinks.py): `refusing` tells predict to answer 503 meanwhile in `fail_closed`
mode, the one check a request pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import msgspec

from gateway.schema.request_schema import InputBatch
from gateway.telemetry.audit_file import RotatingFile, shared_lock
from gateway.telemetry.audit_sinks import AuditHealth, AuditSinks, FailureMode

__all__ = ["AuditRecord", "AuditWriter"]


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
    # Who asked (the API key's principal or the JWT's subject); omitted while auth is off.
    principal: str | None = None
    # The client's own `x-request-id`, when it sent a valid one: recorded beside the server's
    # unique `request_id` (the key), never in its place (client ids can repeat or be forged).
    client_request_id: str | None = None
    # Shadow predictions only (omitted from primary records): the primary request they copy,
    # and what went wrong when the shadow failed (a kind of stageserve_shadow_errors_total).
    shadow: bool = False
    primary_request_id: str | None = None
    shadow_error: str | None = None
    # What the version answered (one per row, as in the response; `audit_include_predictions`):
    # outcomes sent to /feedback are scored against it. Absent when nothing was answered.
    predictions: list[Any] | None = None
    # As-of requests only: the instant asked for and the basis that chose the version
    # ("served": the activation journal, "assigned": the registry's intent).
    as_of: str | None = None
    basis: str | None = None


# (unix time, request id, model, stage, version, digest, status, latency s, rows, inputs,
#  principal, the client's request id, predictions)
Entry = tuple[
    float,
    str,
    str,
    str,
    "str | None",
    "str | None",
    int,
    float,
    int,
    "InputBatch | None",
    "str | None",
    "str | None",
    "list[Any] | None",
]


class AuditWriter:
    """`submit` per request; `run()` as a task flushes periodically; `stop()` flushes the rest."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        stdout: bool = False,
        max_bytes: int = 100 * 1_048_576,
        backups: int = 5,
        include_inputs: bool = False,
        include_predictions: bool = True,
        queue_max: int = 100_000,
        stream: IO[bytes] | None = None,
        flush_interval_s: float = 0.05,
        failure_mode: FailureMode = "fail_open",
        retry_s: float = 1.0,
        extra_sinks: Sequence[tuple[str, Callable[[bytes], None]]] = (),
        lock_dir: Path | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        # --workers N: the folder of the locks the workers share (audit file, stdout).
        self.lock_dir = lock_dir
        # More places every batch goes (the PostgreSQL spool), after the file and stdout.
        self.extra_sinks = tuple(extra_sinks)
        self.enabled = self.path is not None or stdout or bool(self.extra_sinks)
        self.max_bytes = max_bytes
        self.backups = backups
        self.include_inputs = include_inputs
        self.include_predictions = include_predictions
        self.queue_max = queue_max
        self.flush_interval_s = flush_interval_s
        self._stream = stream if stream is not None else (sys.stdout.buffer if stdout else None)
        # The encoded lines not written yet: bytes, which the garbage collector does not track.
        self._pending: list[bytes] = []
        self._encoder = msgspec.json.Encoder()
        self._file: RotatingFile | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Not bound to a loop until first awaited (Python >= 3.10), so safe to make here.
        self._stop = asyncio.Event()
        # (the second, its ISO text): one attribute, so a reader never pairs a second with
        # another second's text.
        self._second: tuple[int, str] = (-1, "")
        self.failure_mode = failure_mode
        self.retry_s = retry_s
        self._sinks = self._make_sinks()
        # Read by predict on every request (fail_closed: 503 while records cannot be written).
        self.refusing = False
        # Flusher iterations done; `settled()` waits for two more.
        self._rounds = 0

    @property
    def written(self) -> int:
        """Records written to the first sink (the file, else the stream, else the spool)."""
        return self._sinks.written

    def health(self) -> AuditHealth:
        return self._sinks.health(len(self._pending))

    def submit(self, entry: Entry) -> None:
        """A request's record, encoded now: nothing of the request outlives this call."""
        self._pending.append(self._line(entry))

    def submit_shadow(self, entry: Entry, primary_request_id: str, error: str | None) -> None:
        """A shadow prediction's record: `entry` names the shadow version and its stage."""
        self._pending.append(
            self._line(entry, shadow=True, primary_request_id=primary_request_id, error=error)
        )

    def submit_as_of(self, entry: Entry, as_of: str, basis: str) -> None:
        """An as-of request's record (`entry` names the historical version that answered)."""
        self._pending.append(self._line(entry, as_of=(as_of, basis)))

    def backlog(self) -> int:
        return len(self._pending)

    def is_full(self) -> bool:
        return len(self._pending) >= self.queue_max

    def open(self) -> None:
        """Open the file (creating its folder); before the first `submit`."""
        if self.path is not None and self._file is None:
            self._file = RotatingFile(
                self.path,
                max_bytes=self.max_bytes,
                backups=self.backups,
                lock_path=self.lock_dir / "audit.lock" if self.lock_dir is not None else None,
            )
            self._sinks = self._make_sinks()

    def _make_sinks(self) -> AuditSinks:
        sinks: list[tuple[str, Callable[[bytes], None]]] = []
        if self._file is not None:
            sinks.append((str(self.path), self._file.write))
        if self._stream is not None:
            sinks.append(("stdout", self._write_stream))
        sinks.extend(self.extra_sinks)
        return AuditSinks(
            sinks, mode=self.failure_mode, max_records=self.queue_max, retry_s=self.retry_s
        )

    def _write_stream(self, data: bytes) -> None:
        assert self._stream is not None
        # Workers share stdout: a batch longer than a pipe's atomic write (4 KiB) could
        # interleave with another worker's without the lock.
        with shared_lock(self.lock_dir / "stdout.lock" if self.lock_dir is not None else None):
            self._stream.write(data)
            self._stream.flush()

    async def run(self) -> None:
        """Flush every `flush_interval_s` until `stop()`; the write runs on a worker thread."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval_s)
            # While failing, also with nothing new: the retry of what is held is due.
            if self._pending or self._sinks.failing:
                data, count = self._take()
                await loop.run_in_executor(self._executor, self._write, data, count)
            self._rounds += 1

    async def settled(self, timeout_s: float = 1.0) -> None:
        """Wait until the records submitted before this call have been handed to the sinks
        (two flusher rounds: the one under way may have taken its batch already). For a
        reader that looks up a request answered a moment ago (feedback)."""
        target = self._rounds + 2
        deadline = time.monotonic() + timeout_s
        while self._rounds < target and time.monotonic() < deadline and not self._stop.is_set():
            await asyncio.sleep(self.flush_interval_s / 2)

    async def stop(self, task: asyncio.Task[None] | None = None) -> None:
        """Stop the flusher (letting a write in progress finish), then write what is left."""
        self._stop.set()
        if task is not None:
            await task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.close()

    def flush(self) -> None:
        """Write everything pending (and retry what failed before), on the calling thread."""
        if self._pending or self._sinks.failing:
            self._write(*self._take(), force=True)

    def close(self) -> None:
        self.flush()
        if self._sinks.failing:
            self._sinks.give_up()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _take(self) -> tuple[bytes, int]:
        lines, self._pending = self._pending, []
        return b"".join(lines), len(lines)

    def _line(
        self,
        entry: Entry,
        *,
        shadow: bool = False,
        primary_request_id: str | None = None,
        error: str | None = None,
        as_of: tuple[str, str] | None = None,
    ) -> bytes:
        (
            t,
            rid,
            model,
            stage,
            version,
            digest,
            status,
            latency_s,
            rows,
            batch,
            principal,
            client_rid,
            predictions,
        ) = entry
        sha = inputs = None
        if batch is not None:
            canonical = batch.canonical_json()
            sha = hashlib.sha256(canonical).hexdigest()
            if self.include_inputs:
                inputs = msgspec.json.decode(canonical)
        record = AuditRecord(
            time=self._iso(t),
            request_id=rid,
            model=model,
            stage=stage,
            version=version,
            digest=digest,
            status=status,
            # round(x, 3) to the microsecond, at a sixth of its cost.
            latency_ms=int(latency_s * 1e6 + 0.5) / 1000,
            rows=rows,
            input_sha256=sha,
            principal=principal,
            client_request_id=client_rid,
            predictions=predictions if self.include_predictions else None,
        )
        # The fields most records leave out are set only when present: with all 19 keywords
        # msgspec takes ~0.6 µs to build the record, with these 14 ~0.1 µs.
        if inputs is not None or shadow or as_of is not None:
            record = msgspec.structs.replace(
                record,
                inputs=inputs,
                shadow=shadow,
                primary_request_id=primary_request_id,
                shadow_error=error,
                as_of=as_of[0] if as_of else None,
                basis=as_of[1] if as_of else None,
            )
        return self._encoder.encode(record) + b"\n"

    def _iso(self, t: float) -> str:
        # datetime formatting costs ~4 µs; the second's text is cached and the micros appended.
        second = int(t)
        cached, text = self._second
        if second != cached:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        # %-formatting: 0.2 µs against the f-string's 0.35 (its int()); %d truncates alike.
        return "%s.%06dZ" % (text, (t - second) * 1e6)  # noqa: UP031

    def _write(self, data: bytes, count: int, *, force: bool = False) -> None:
        self._sinks.write(data, count, force=force)
        self.refusing = self._sinks.refusing
