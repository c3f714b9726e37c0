"""The desired-state snapshot: which package each (model, stage) should serve.

registry_sync writes it (atomically, in sidecar mode to `<cache>/snapshot.json`); the gateway's
ModelPool reconciles to it. It is the only thing the two halves exchange.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec

from registry_sync.registry.views import RefusedAssignment

__all__ = [
    "SNAPSHOT_FILE",
    "STATUS_FILE",
    "DesiredEntry",
    "DesiredState",
    "ModelSyncError",
    "SyncStatus",
    "read_snapshot",
    "read_status",
    "write_json_atomically",
    "write_snapshot",
    "write_status",
]

SNAPSHOT_FILE = "snapshot.json"
# Written after every poll, good or bad, so a sidecar's failures are visible to the gateway.
STATUS_FILE = "sync-status.json"


class DesiredEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: str
    stage: str
    version: str
    # Absolute path of the materialized, verified package folder.
    package_path: str
    # "sha256:<hex>" of the package's model.yaml bytes (which pin every file's digest).
    digest: str
    # In a stage the trust policy protects: who signed the assignment being followed.
    signed_by: str | None = None


class ModelSyncError(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A (model, stage) that could not be brought to its assigned version on the last sync."""

    model: str
    stage: str | None
    version: str | None
    message: str
    at: str


class DesiredState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    generated_at: str
    registry: str
    entries: list[DesiredEntry]
    errors: list[ModelSyncError] = []
    # Assignments to protected stages not followed: unsigned, or not by an allowed signer.
    untrusted: list[RefusedAssignment] = []
    schema_version: int = 1


class SyncStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How the last polls of the registry went (the snapshot only changes on success).

    Unknown fields are accepted: a gateway reads the status of a sync that may be newer.
    """

    registry: str
    last_attempt_at: str
    last_success_at: str | None
    # "ok", "partial" (some models failed and kept their last good version) or "error".
    result: str
    message: str = ""
    consecutive_failures: int = 0
    # Failures of the sync loop itself (an unexpected error, an unwritable snapshot) since
    # the process started; the loop logs each, backs off and goes on.
    loop_failures: int = 0
    last_loop_failure: str | None = None
    last_loop_failure_at: str | None = None


def write_snapshot(state: DesiredState, path: Path) -> None:
    """Write atomically: a reader sees the old snapshot or the new one, never half of one."""
    _write_atomically(msgspec.json.format(msgspec.json.encode(state), indent=2), path)


def write_status(status: SyncStatus, path: Path) -> None:
    _write_atomically(msgspec.json.format(msgspec.json.encode(status), indent=2), path)


def read_status(path: Path) -> SyncStatus:
    return msgspec.json.decode(path.read_bytes(), type=SyncStatus)


def write_json_atomically(data: bytes, path: Path) -> None:
    """Any file the gateway reads from the cache: the old bytes or the new, never half."""
    _write_atomically(data, path)


def _write_atomically(data: bytes, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: Path) -> DesiredState:
    return msgspec.json.decode(path.read_bytes(), type=DesiredState)
