"""Activation events: when a version really started or stopped serving a stage, or failed to."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import msgspec

__all__ = ["ActivationEvent", "ActivationListener", "utc_now_iso"]

ActivationKind = Literal["activated", "deactivated", "failed"]


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
