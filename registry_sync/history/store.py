"""`HistoryReader`: the questions every history store answers, and `open_history` to open one
by where it is (files, or a `postgresql://` URL).

Both stores answer the same queries the same way, so the gateway (feedback, performance,
as-of), `stageserve replay`, `stageserve report` and `api.load(as_of=...)` never care which
one holds the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from registry_sync.history.events import ActivationEvent
from registry_sync.history.records import (
    AuditRow,
    OutcomeRecord,
    OutcomeSums,
    PredictionCount,
    ShadowOutcome,
    UsageRow,
)

__all__ = ["HistoryReader", "is_postgres_url", "journal_events", "open_history"]


class HistoryReader(Protocol):
    """Read-only queries over audit records, journal events and outcomes. Times are unix
    seconds; `since` is inclusive, `until` exclusive; None means unbounded."""

    def journal(self) -> list[ActivationEvent]:
        """Every activation event, oldest first (of every replica, for a shared store)."""
        ...

    def audit_record(self, request_id: str) -> AuditRow | None: ...

    def audit_by_client_id(self, model: str, client_request_id: str) -> list[AuditRow]:
        """Primary records of `model` whose client sent this `x-request-id`, newest first."""
        ...

    def audit_records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
    ) -> Iterator[AuditRow]:
        """Every record (inputs included, when they were kept), oldest first."""
        ...

    def outcome(self, request_id: str) -> OutcomeRecord | None: ...

    def prediction_counts(
        self, model: str, since: float, until: float, bucket_s: float
    ) -> list[PredictionCount]: ...

    def outcome_sums(
        self, model: str, since: float, until: float, bucket_s: float
    ) -> list[OutcomeSums]:
        """Outcomes summed per version and bucket of their prediction's time."""
        ...

    def shadow_outcomes(self, model: str, since: float, until: float) -> list[ShadowOutcome]: ...

    def usage(self, since: float | None, until: float | None) -> list[UsageRow]:
        """Primary requests per caller, model, version and status."""
        ...

    def close(self) -> None: ...


def is_postgres_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def open_history(
    location: str | Path,
    *,
    journal_path: Path | None = None,
    outcomes_path: Path | None = None,
    index_path: Path | None = None,
) -> HistoryReader:
    """A `postgresql://` URL, or an audit JSON-lines file (with the journal and outcomes
    files beside it unless given, and its SQLite index)."""
    text = str(location)
    if is_postgres_url(text):
        from registry_sync.history.postgres.reader import PostgresHistory

        return PostgresHistory(text)
    from registry_sync.history.files import FileHistory

    return FileHistory(
        Path(text), journal_path=journal_path, outcomes_path=outcomes_path, index_path=index_path
    )


def journal_events(location: str | Path) -> list[ActivationEvent]:
    """The activation journal at `location` (a JSON-lines file, or a PostgreSQL history
    store's URL), oldest first."""
    text = str(location)
    if is_postgres_url(text):
        reader = open_history(text)
        try:
            return reader.journal()
        finally:
            reader.close()
    from registry_sync.history.events import read_journal
    from registry_sync.history.records import epoch_of

    try:
        events = read_journal(Path(text))
    except FileNotFoundError:
        from registry_sync.errors import HistoryQueryError

        raise HistoryQueryError(f"no activation journal at {text}", reason="no_journal") from None
    return sorted(events, key=lambda e: epoch_of(e.at))
