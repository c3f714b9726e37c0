"""The gateway's handle on its history store: the reader, the outcome writer, and the one
thread that talks to them (queries never run on the event loop)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from gateway.errors import HistoryNotFoundError, HistoryUnavailableError
from gateway.settings import Settings
from registry_sync.errors import HistoryStoreError
from registry_sync.history.events import ActivationEvent, read_journal
from registry_sync.history.records import OutcomeRecord, epoch_of
from registry_sync.history.store import HistoryReader, open_history

__all__ = ["GatewayHistory", "LineSink", "OutcomeWriter", "history_paths"]

T = TypeVar("T")
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class LineSink(Protocol):
    """Somewhere whole JSON lines go (the PostgreSQL spool)."""

    def append(self, data: bytes) -> None: ...


class OutcomeWriter:
    """Appends each outcome as one JSON line to the outcomes file and to the other sinks."""

    def __init__(self, path: Path | None, sinks: Sequence[LineSink] = ()) -> None:
        self.path = path
        self.sinks = tuple(sinks)
        self._encode = msgspec.json.Encoder().encode
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: OutcomeRecord) -> None:
        line = self._encode(record) + b"\n"
        if self.path is not None:
            fd = os.open(self.path, _FLAGS, 0o666)
            try:
                # One write of a line on an O_APPEND descriptor: never interleaved, never torn
                # by another writer; a short write (full disk) raises below.
                if os.write(fd, line) != len(line):
                    raise OSError(f"{self.path}: short write")
            finally:
                os.close(fd)
        for sink in self.sinks:
            sink.append(line)


def history_paths(settings: Settings) -> tuple[Path | None, Path | None, Path | None, Path | None]:
    """(audit, journal, outcomes, index) paths of the file store; outcomes and index default
    to files beside the audit file (none without one); the journal stands on its own."""
    journal = Path(settings.journal_path) if settings.journal_path else None
    if settings.audit_path is None:
        return None, journal, None, None
    audit = Path(settings.audit_path)
    outcomes = Path(settings.outcomes_path or audit.parent / "outcomes.jsonl")
    index = Path(settings.history_index_path or audit.parent / "history.sqlite")
    return audit, journal, outcomes, index


class GatewayHistory:
    """What the history routes use; `reader` is None when nothing is recorded."""

    def __init__(
        self,
        reader: HistoryReader | None,
        outcomes: OutcomeWriter | None,
        *,
        missing: str = "",
        journal_path: Path | None = None,
        journal_in_reader: bool = False,
    ) -> None:
        self.reader = reader
        self.outcomes = outcomes
        self.missing = missing
        # The file store's journal (None with PostgreSQL: the reader has every replica's).
        self.journal_path = journal_path
        self.journal_in_reader = journal_in_reader
        self._journal_key: tuple[float, float] | None = None
        self._journal: list[ActivationEvent] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")

    @classmethod
    def from_settings(cls, settings: Settings, sinks: Sequence[LineSink] = ()) -> GatewayHistory:
        """The PostgreSQL store when `postgres_url` is set (`sinks`: its outcome spool; the
        outcomes file is written too when there is an audit file), else the files."""
        audit, journal, outcomes, index = history_paths(settings)
        if settings.postgres_url:
            writer = OutcomeWriter(outcomes, sinks)
            return cls(open_history(settings.postgres_url), writer, journal_in_reader=True)
        if audit is None:
            missing = "no audit trail is kept (set audit_path or postgres_url)"
            return cls(None, None, missing=missing, journal_path=journal)
        reader = open_history(audit, journal_path=journal, outcomes_path=outcomes, index_path=index)
        return cls(reader, OutcomeWriter(outcomes, sinks), journal_path=journal)

    def journal(self) -> list[ActivationEvent]:
        """Every activation event, oldest first (blocking: call through `run`)."""
        if self.journal_in_reader and self.reader is not None:
            # Every replica's events, read again at most once a second.
            now = time.monotonic()
            if self._journal_key is None or now - self._journal_key[0] >= 1.0:
                self._journal = self.reader.journal()
                self._journal_key = (now, 0.0)
            return self._journal
        if self.journal_path is None:
            raise HistoryNotFoundError(
                "basis 'served' needs the activation journal, and none is kept "
                "(set journal_path, or use basis=assigned)",
                {"basis": "served", "reason": "no_journal"},
            )
        try:
            st = self.journal_path.stat()
        except FileNotFoundError:
            return []
        key = (float(st.st_size), float(st.st_mtime_ns))
        if key != self._journal_key:
            events = read_journal(self.journal_path)
            self._journal = sorted(events, key=lambda e: epoch_of(e.at))
            self._journal_key = key
        return self._journal

    def need_reader(self) -> HistoryReader:
        if self.reader is None:
            raise HistoryNotFoundError(
                f"this gateway keeps no history: {self.missing}", {"reason": "no_store"}
            )
        return self.reader

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the history thread; a store failure is a 503 history_unavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except HistoryStoreError as exc:
            raise HistoryUnavailableError(
                "the history store cannot be read right now", {"reason": exc.reason}
            ) from exc
        except OSError as exc:  # the outcomes file or the spool (a full disk)
            raise HistoryUnavailableError(
                "the history store cannot be written right now",
                {"reason": exc.strerror or str(exc)},
            ) from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.reader is not None:
            self.reader.close()
