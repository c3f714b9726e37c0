"""The rows history is made of, as every store gives them back: audit records, outcomes, and
the sums that performance over time is computed from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "AuditRow",
    "OutcomeRecord",
    "OutcomeSums",
    "PredictionCount",
    "ShadowOutcome",
    "UsageRow",
    "epoch_of",
    "iso_of",
]


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """An audit record read back (the README's audit format; unknown fields are ignored)."""

    time: str
    request_id: str
    model: str
    stage: str
    version: str | None
    digest: str | None
    status: int
    latency_ms: float = 0.0
    rows: int = 0
    input_sha256: str | None = None
    inputs: dict[str, Any] | None = None
    principal: str | None = None
    client_request_id: str | None = None
    shadow: bool = False
    primary_request_id: str | None = None
    shadow_error: str | None = None
    predictions: list[Any] | None = None
    as_of: str | None = None
    basis: str | None = None
    # The replica that wrote it (PostgreSQL stores only; a file belongs to one gateway).
    replica: str | None = None


class OutcomeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One observed outcome, joined with the prediction it judges (one JSON line of the
    outcomes file, one row in PostgreSQL). The sums are over rows x outputs."""

    request_id: str
    received_at: str
    model: str
    stage: str
    version: str
    digest: str | None
    predicted_at: str
    outcome: list[Any]
    principal: str | None = None
    client_request_id: str | None = None
    regression_values: int = 0
    abs_error: float = 0.0
    squared_error: float = 0.0
    labels: int = 0
    correct: int = 0
    log_loss_values: int = 0
    log_loss: float = 0.0


class OutcomeSums(msgspec.Struct, frozen=True, kw_only=True):
    """Outcomes of one version whose predictions fall in one time bucket, summed."""

    bucket: float
    version: str
    outcomes: int
    regression_values: int
    abs_error: float
    squared_error: float
    labels: int
    correct: int
    log_loss_values: int
    log_loss: float

    @classmethod
    def from_row(cls, row: Sequence[Any], since: float, bucket_s: float) -> OutcomeSums:
        """One row of a store's bucketed sum query: bucket index, version, count, then the sums
        in field order. Cast, because PostgreSQL's sum of a bigint is a Decimal."""
        return cls(
            bucket=since + row[0] * bucket_s,
            version=row[1],
            outcomes=int(row[2]),
            regression_values=int(row[3]),
            abs_error=float(row[4]),
            squared_error=float(row[5]),
            labels=int(row[6]),
            correct=int(row[7]),
            log_loss_values=int(row[8]),
            log_loss=float(row[9]),
        )


class PredictionCount(msgspec.Struct, frozen=True, kw_only=True):
    """Answered primary requests (status 200, not shadow, not as-of) of one version in one
    time bucket: the denominator of coverage."""

    bucket: float
    version: str
    stage: str
    requests: int


class ShadowOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """An outcome whose request was also predicted by a shadow version."""

    stage: str
    primary_version: str
    shadow_stage: str
    shadow_version: str
    outcome: list[Any]
    primary_predictions: list[Any]
    shadow_predictions: list[Any]


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    principal: str | None
    model: str
    version: str | None
    status: int
    requests: int


_second_cache: dict[str, int] = {}


def epoch_of(text: str) -> float:
    """Unix seconds of an ISO 8601 UTC time as history writes them (`...T03:27:17.965528Z`);
    the second's conversion is cached, so reading millions of records stays cheap. Other
    ISO 8601 forms (an offset, no zone: UTC) are parsed in full."""
    if not (text.endswith("Z") and len(text) >= 20 and text[10] == "T"):
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    head = text[:19]
    second = _second_cache.get(head)
    if second is None:
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        parsed = datetime.fromisoformat(head)
        second = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
        _second_cache[head] = second
    digits = text[20:-1] if text[19] == "." else ""
    return second + int(digits) / 10 ** len(digits) if digits.isdigit() else float(second)


def iso_of(t: float, digits: int = 3) -> str:
    """`2026-11-23T03:27:17.965Z` for unix seconds (`digits=6`: microseconds, as audit
    records are written)."""
    second = int(t // 1)
    scale = 10**digits
    fraction = round((t - second) * scale)
    if fraction == scale:
        second, fraction = second + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{fraction:0{digits}d}Z"
