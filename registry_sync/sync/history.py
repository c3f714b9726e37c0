"""`<cache>/registry-history.json`: the registry's history and the sync's refusals, for the
console.

The sync writes it (atomically, like the snapshot) after every poll whose result changed it,
so the gateway can draw stage timelines without registry access: in the sidecar mode it holds
no registry credentials, and this file holds none either (only what `stageserve registry
history` prints). A refusal is an assignment the sync would not follow: a version it could not
materialize (fetch, digest or manifest failure), or a stage tag of a protected stage whose
signature is not trusted. The gateway never saw either, so the activation journal cannot say.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from registry_sync.registry.timeline import RegistryHistory
from registry_sync.registry.views import RefusedAssignment
from registry_sync.sync.snapshot import ModelSyncError, write_json_atomically

__all__ = [
    "HISTORY_FILE",
    "HistoryReader",
    "HistoryRecorder",
    "Refusal",
    "SyncHistory",
    "read_history",
]

log = logging.getLogger(__name__)

HISTORY_FILE = "registry-history.json"
# Refusals kept (oldest dropped first): the timeline marks them, it is no audit log.
MAX_REFUSALS = 500


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    stage: str | None
    version: str | None
    message: str
    first_at: str
    last_at: str


class SyncHistory(msgspec.Struct, frozen=True, kw_only=True):
    registry: RegistryHistory | None = None
    refusals: list[Refusal] = []
    schema_version: int = 1


@runtime_checkable
class HistoryReader(Protocol):
    """A registry source that can tell its history (the git source can; others may not)."""

    def registry_history(
        self,
        *,
        generated_at: str,
        stages: Sequence[str] | None,
        models: Sequence[str] | None,
    ) -> RegistryHistory: ...


def read_history(path: Path) -> SyncHistory:
    return msgspec.json.decode(path.read_bytes(), type=SyncHistory)


class HistoryRecorder:
    """Keeps the file current; never raises (the history is informative, syncing is not)."""

    def __init__(self, path: Path, reader: Any, *, stages: Sequence[str] | None = None,
                 models: Sequence[str] | None = None) -> None:  # fmt: skip
        self.path = path
        self._reader = reader if isinstance(reader, HistoryReader) else None
        self._stages, self._models = stages, models
        self._refusals: dict[tuple[str, str | None, str | None, str], Refusal] = {}
        self._written: bytes | None = None
        self._registry: RegistryHistory | None = None
        try:
            previous = read_history(path)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        self._registry = previous.registry
        for r in previous.refusals:
            self._refusals[(r.model, r.stage, r.version, r.message)] = r

    def record(
        self,
        generated_at: str,
        errors: Sequence[ModelSyncError],
        untrusted: Sequence[RefusedAssignment] = (),
    ) -> None:
        try:
            self._record(generated_at, errors, untrusted)
        except Exception as exc:  # never stop syncing for the console's sake
            log.warning("cannot update %s: %s", self.path, exc)

    def _record(
        self,
        generated_at: str,
        errors: Sequence[ModelSyncError],
        untrusted: Sequence[RefusedAssignment],
    ) -> None:
        for u in untrusted:
            # At the refused tag's own time: that is when the assignment was made and ignored.
            self._refusals[(u.model, u.stage, u.tag, u.status)] = Refusal(
                model=u.model,
                stage=u.stage,
                version=u.version,
                message=f"{u.tag}: {u.status}: {u.reason}",
                first_at=u.time,
                last_at=u.time,
            )
        for e in errors:
            key = (e.model, e.stage, e.version, e.message)
            known = self._refusals.get(key)
            self._refusals[key] = Refusal(
                model=e.model,
                stage=e.stage,
                version=e.version,
                message=e.message,
                first_at=known.first_at if known else e.at,
                last_at=e.at,
            )
        if len(self._refusals) > MAX_REFUSALS:
            oldest = sorted(self._refusals.items(), key=lambda kv: kv[1].last_at)
            self._refusals = dict(oldest[-MAX_REFUSALS:])
        if self._reader is not None:
            self._registry = self._reader.registry_history(
                generated_at=generated_at, stages=self._stages, models=self._models
            )
        refusals = sorted(self._refusals.values(), key=lambda r: (r.first_at, r.model))
        history = SyncHistory(registry=self._registry, refusals=refusals)
        # Write only when something but the time changed: the gateway re-reads on change.
        comparable = msgspec.json.encode(
            msgspec.structs.replace(
                history,
                registry=msgspec.structs.replace(self._registry, generated_at="")
                if self._registry
                else None,
            )
        )
        if comparable == self._written:
            return
        write_json_atomically(msgspec.json.encode(history), self.path)
        self._written = comparable
