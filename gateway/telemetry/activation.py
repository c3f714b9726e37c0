"""Activation events: when a version really started or stopped serving a stage, or failed to.

The event type and its fold live in `registry_sync.history.events` (read back there by
`api.load(as_of=...)` and the history store); this is the gateway's side: telling listeners.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from registry_sync.history.events import ActivationEvent, ActivationKind

__all__ = ["ActivationEvent", "ActivationKind", "ActivationListener", "notify", "utc_now_iso"]

log = logging.getLogger("stageserve.pool")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
