"""`HistoryReader` over PostgreSQL: the same questions as the file store, every replica's
records at once. One connection, opened on first use and again after a failure; any database
error is a HistoryStoreError (the gateway answers 503 history_unavailable)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from registry_sync.errors import HistoryStoreError
from registry_sync.history.events import ActivationEvent, iso
from registry_sync.history.postgres.url import redact
from registry_sync.history.records import (
    AuditRow,
    OutcomeRecord,
    OutcomeSums,
    PredictionCount,
    ShadowOutcome,
    UsageRow,
    iso_of,
)

__all__ = ["PostgresHistory"]

_AUDIT = (
    "request_id, time, model, stage, version, digest, status, latency_ms, rows, input_sha256, "
    "inputs, predictions, principal, client_request_id, shadow, primary_request_id, "
    "shadow_error, as_of, basis, replica"
)
_OUTCOME = (
    "request_id, received_at, model, stage, version, digest, predicted_at, outcome, principal, "
    "client_request_id, regression_values, abs_error, squared_error, labels, correct, "
    "log_loss_values, log_loss"
)
_STREAM_BATCH = 5000


class PostgresHistory:
    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.location = redact(url)
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            from registry_sync.history.postgres.schema import ensure_schema

            self._conn = psycopg.connect(
                self.url, connect_timeout=max(1, round(self.connect_timeout_s)), autocommit=True
            )
            # A read-only role: the replicas' shippers create the tables.
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                ensure_schema(self._conn)
        return self._conn

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        import psycopg

        with self._lock:
            try:
                with self._connection().cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
            except psycopg.Error as exc:
                self._close()
                raise HistoryStoreError(self.location, _first_line(exc)) from exc

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: gone either way
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- HistoryReader ----------------------------------------------------------------------

    def journal(self) -> list[ActivationEvent]:
        rows = self._query(
            "SELECT at, model, stage, version, digest, kind, message FROM stageserve_journal "
            "ORDER BY at, replica"
        )
        return [
            ActivationEvent(
                at=iso(r[0]),
                model=r[1],
                stage=r[2],
                version=r[3],
                digest=r[4],
                kind=r[5],
                message=r[6],
            )
            for r in rows
        ]

    def replica_journal(self, replica: str) -> list[ActivationEvent]:
        """One replica's events (what that gateway itself served), oldest first."""
        rows = self._query(
            "SELECT at, model, stage, version, digest, kind, message FROM stageserve_journal "
            "WHERE replica = %s ORDER BY at",
            (replica,),
        )
        return [
            ActivationEvent(
                at=iso(r[0]),
                model=r[1],
                stage=r[2],
                version=r[3],
                digest=r[4],
                kind=r[5],
                message=r[6],
            )
            for r in rows
        ]

    def audit_record(self, request_id: str) -> AuditRow | None:
        rows = self._query(
            f"SELECT {_AUDIT} FROM stageserve_audit WHERE request_id = %s", (request_id,)
        )
        return _audit_row(rows[0]) if rows else None

    def audit_by_client_id(self, model: str, client_request_id: str) -> list[AuditRow]:
        rows = self._query(
            f"SELECT {_AUDIT} FROM stageserve_audit WHERE model = %s AND client_request_id = %s "
            "AND NOT shadow ORDER BY time DESC LIMIT 50",
            (model, client_request_id),
        )
        return [_audit_row(r) for r in rows]

    def audit_records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
    ) -> Iterator[AuditRow]:
        """Streamed with a server-side cursor on a connection of its own (a replay of millions
        of records never holds them all)."""
        import psycopg

        clauses: list[str] = ["true"]
        args: list[Any] = []
        if since is not None:
            clauses.append("time >= to_timestamp(%s)")
            args.append(since)
        if until is not None:
            clauses.append("time < to_timestamp(%s)")
            args.append(until)
        if model is not None:
            clauses.append("model = %s")
            args.append(model)
        sql = f"SELECT {_AUDIT} FROM stageserve_audit WHERE {' AND '.join(clauses)} ORDER BY time"
        try:
            with (
                psycopg.connect(
                    self.url, connect_timeout=max(1, round(self.connect_timeout_s))
                ) as conn,
                conn.cursor(name="stageserve_replay") as cur,
            ):
                cur.itersize = _STREAM_BATCH
                cur.execute(sql, args)
                for row in cur:
                    yield _audit_row(row)
        except psycopg.Error as exc:
            raise HistoryStoreError(self.location, _first_line(exc)) from exc

    def outcome(self, request_id: str) -> OutcomeRecord | None:
        rows = self._query(
            f"SELECT {_OUTCOME} FROM stageserve_outcomes WHERE request_id = %s", (request_id,)
        )
        return _outcome(rows[0]) if rows else None

    def prediction_counts(
        self, model: str, since: float, until: float, bucket_s: float
    ) -> list[PredictionCount]:
        rows = self._query(
            "SELECT floor((extract(epoch FROM time) - %s) / %s)::bigint AS b, version, stage, "
            "count(*) FROM stageserve_audit WHERE model = %s AND time >= to_timestamp(%s) "
            "AND time < to_timestamp(%s) AND status = 200 AND NOT shadow AND as_of IS NULL "
            "GROUP BY b, version, stage ORDER BY b, version, stage",
            (since, bucket_s, model, since, until),
        )
        return [
            PredictionCount(bucket=since + b * bucket_s, version=v, stage=s, requests=n)
            for b, v, s, n in rows
        ]

    def outcome_sums(
        self, model: str, since: float, until: float, bucket_s: float
    ) -> list[OutcomeSums]:
        rows = self._query(
            "SELECT floor((extract(epoch FROM predicted_at) - %s) / %s)::bigint AS b, version, "
            "count(*), sum(regression_values), sum(abs_error), sum(squared_error), sum(labels), "
            "sum(correct), sum(log_loss_values), sum(log_loss) FROM stageserve_outcomes "
            "WHERE model = %s AND predicted_at >= to_timestamp(%s) "
            "AND predicted_at < to_timestamp(%s) GROUP BY b, version ORDER BY b, version",
            (since, bucket_s, model, since, until),
        )
        return [OutcomeSums.from_row(r, since, bucket_s) for r in rows]

    def shadow_outcomes(self, model: str, since: float, until: float) -> list[ShadowOutcome]:
        rows = self._query(
            "SELECT p.stage, p.version, s.stage, s.version, o.outcome, p.predictions, "
            "s.predictions FROM stageserve_outcomes o "
            "JOIN stageserve_audit p ON p.request_id = o.request_id "
            "JOIN stageserve_audit s ON s.request_id = o.request_id || '#shadow' "
            "WHERE o.model = %s AND o.predicted_at >= to_timestamp(%s) "
            "AND o.predicted_at < to_timestamp(%s) AND s.status = 200 "
            "AND p.predictions IS NOT NULL AND s.predictions IS NOT NULL",
            (model, since, until),
        )
        return [
            ShadowOutcome(
                stage=r[0],
                primary_version=r[1],
                shadow_stage=r[2],
                shadow_version=r[3],
                outcome=r[4],
                primary_predictions=r[5],
                shadow_predictions=r[6],
            )
            for r in rows
        ]

    def usage(self, since: float | None, until: float | None) -> list[UsageRow]:
        rows = self._query(
            "SELECT principal, model, version, status, count(*) FROM stageserve_audit "
            "WHERE NOT shadow AND time >= to_timestamp(%s) AND time < to_timestamp(%s) "
            "GROUP BY 1, 2, 3, 4 ORDER BY 2, 1, 3, 4",
            (since if since is not None else 0.0, until if until is not None else 1e11),
        )
        return [
            UsageRow(principal=r[0], model=r[1], version=r[2], status=r[3], requests=r[4])
            for r in rows
        ]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _time(value: datetime) -> str:
    return iso_of(value.timestamp(), 6)


def _audit_row(r: Any) -> AuditRow:
    return AuditRow(
        request_id=r[0], time=_time(r[1]), model=r[2], stage=r[3], version=r[4], digest=r[5],
        status=r[6], latency_ms=r[7] or 0.0, rows=r[8] or 0, input_sha256=r[9], inputs=r[10],
        predictions=r[11], principal=r[12], client_request_id=r[13], shadow=r[14],
        primary_request_id=r[15], shadow_error=r[16], as_of=r[17], basis=r[18], replica=r[19],
    )  # fmt: skip


def _outcome(r: Any) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=r[0], received_at=_time(r[1]), model=r[2], stage=r[3], version=r[4],
        digest=r[5], predicted_at=_time(r[6]), outcome=r[7], principal=r[8],
        client_request_id=r[9], regression_values=r[10], abs_error=r[11], squared_error=r[12],
        labels=r[13], correct=r[14], log_loss_values=r[15], log_loss=r[16],
    )  # fmt: skip
