"""The `as_of` and `basis` query parameters of an as-of predict request."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import parse_qs

from gateway.errors import InputValidationError
from registry_sync.history.events import iso, parse_time

__all__ = ["AsOf", "Basis", "parse_as_of"]

Basis = Literal["served", "assigned"]
# A little slack for clocks: an instant just ahead of ours is "now", not the future.
_FUTURE_SLACK_S = 1.0


@dataclass(frozen=True)
class AsOf:
    at: datetime
    basis: Basis

    @property
    def at_s(self) -> float:
        return self.at.timestamp()

    @property
    def text(self) -> str:
        return iso(self.at)


def parse_as_of(query: bytes) -> tuple[AsOf, str | None]:
    """(the instant and basis, the stage: None when not named) from the query; 422 naming
    the parameter. An empty `stage=` stays empty (no stage is named "": refused later)."""
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    raw = (values.get("as_of") or [""])[-1]
    basis = (values.get("basis") or ["served"])[-1]
    try:
        at = parse_time(raw)
    except ValueError:
        raise InputValidationError(
            "query.as_of", "expected an ISO 8601 time, e.g. 2026-10-01T12:00:00Z", "shape"
        ) from None
    if at.timestamp() > time.time() + _FUTURE_SLACK_S:
        raise InputValidationError("query.as_of", "is in the future", "shape")
    if basis not in ("served", "assigned"):
        raise InputValidationError("query.basis", "expected served or assigned", "shape")
    stages = values.get("stage")
    return AsOf(at, basis), stages[-1] if stages else None  # type: ignore[arg-type]
