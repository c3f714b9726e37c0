"""Activation events: when a version really started or stopped serving a stage, or failed to."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

__all__ = ["ActivationEvent", "ActivationListener", "notify", "utc_now_iso"]

log = logging.getLogger("stageserve.pool")

# "refused": an assignment the trust policy did not follow (version = the refused one).
ActivationKind = Literal["activated", "deactivated", "failed", "refused"]


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ActivationEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change of what a (model, stage) serves, as the pool saw it happen."""

    at: str
    model: str
    stage: str
    version: str
    digest: str
    kind: ActivationKind
    message: str = ""


# Called on the event loop right after the route table changes; must not block.
ActivationListener = Callable[[ActivationEvent], None]


def notify(
    listeners: Sequence[ActivationListener],
    model: str,
    stage: str,
    version: str,
    digest: str,
    *,
    kind: str,
    message: str = "",
) -> None:
    """Build the event and call every listener; one that raises is logged, not propagated."""
    event = ActivationEvent(
        at=utc_now_iso(),
        model=model,
        stage=stage,
        version=version,
        digest=digest,
        kind=kind,  # type: ignore[arg-type]
        message=message,
    )
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("activation listener failed on %s", event)
