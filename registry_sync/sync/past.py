"""Packages of past versions, for predictions as of a past instant (`?as_of=`).

`RegistryPastPackages.fetch` resolves what the registry assigned to a stage at an instant (or
takes a version), exports that version's package from its commit into `<cache>/.history/`
and verifies every digest, exactly as the sync materializes assigned versions. The gateway
calls it in-process in embedded mode. In sidecar mode the gateway holds no registry
credentials, so it asks the sync through a folder both containers share: it writes
`<id>.request.json`, the sync (`serve_requests`) answers `<id>.answer.json` (`ask` waits for
it). Only (model, version, stage, instant) cross that folder, and the sync only exports
versions the registry has, verified, under its own cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec

from registry_sync.errors import (
    HistoryQueryError,
    ModelNotFoundError,
    NoVersionInStageError,
    PackageError,
    RegistryError,
    VersionNotFoundError,
)
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.views import iso_time
from registry_sync.sync.materialize import Materializer

__all__ = [
    "HISTORY_DIRNAME",
    "PastAnswer",
    "PastPackage",
    "PastRequest",
    "RegistryPastPackages",
    "ask",
    "serve_requests",
]

log = logging.getLogger(__name__)

# Inside the cache: packages of past versions (never collected by the sync's own GC).
HISTORY_DIRNAME = ".history"
_STALE_REQUEST_S = 300.0
_POLL_S = 0.05
# The sync touches this file while it answers; a gateway that finds it older than
# _ALIVE_S answers at once that no sync is listening, instead of waiting out its timeout.
_ALIVE_FILE = ".sync-alive"
_ALIVE_EVERY_S = 1.0
_ALIVE_S = 10.0


class PastPackage(msgspec.Struct, frozen=True, kw_only=True):
    """A verified package of a version, and when it was assigned (asked by stage and time)."""

    model: str
    version: str
    digest: str
    package_path: str
    assigned_at: str | None = None


class PastRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    model: str
    version: str | None = None
    stage: str | None = None
    at: float | None = None


class PastFailure(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    message: str
    earliest: str | None = None


class PastAnswer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    package: PastPackage | None = None
    error: PastFailure | None = None


class RegistryPastPackages:
    """Resolve and materialize past versions from the registry (thread-safe enough: one
    caller at a time, the sync loop's registry reads are independent git commands)."""

    def __init__(
        self, registry: Callable[[], GitRegistry], cache_dir: Path, *, gc_grace_s: float = 600.0
    ) -> None:
        self.registry = registry
        self.materializer = Materializer(cache_dir / HISTORY_DIRNAME, gc_grace_s=gc_grace_s)
        self._used: dict[Path, float] = {}

    def fetch(
        self,
        model: str,
        *,
        version: str | None = None,
        stage: str | None = None,
        at: float | None = None,
    ) -> PastPackage:
        """Raises HistoryQueryError (reason `nothing_assigned`, `not_found`, `unverified`)."""
        reg = self.registry()
        assigned_at = None
        try:
            if version is None:
                if stage is None or at is None:
                    raise ValueError("fetch needs a version, or a stage and an instant")
                found = reg.which(model, stage, at=at)
                version, commit, assigned_at = found.version, found.commit, found.assigned_at
            else:
                commit = reg.version_state(model, version).commit
        except (NoVersionInStageError, ModelNotFoundError):
            earliest = _first_assignment(reg, model, stage or "")
            when = iso_time(int(at)) if at is not None else "now"
            raise HistoryQueryError(
                f"nothing was assigned to {model}#{stage} at {when}"
                + (f" (the first assignment was at {earliest})" if earliest else ""),
                reason="nothing_assigned",
                earliest=earliest,
            ) from None
        except VersionNotFoundError:
            raise HistoryQueryError(
                f"{model} {version} is not in the registry", reason="not_found"
            ) from None
        try:
            done = self.materializer.materialize(reg, model, version, commit)
        except PackageError as exc:
            raise HistoryQueryError(
                f"{model} {version}: its package does not verify: {exc}", reason="unverified"
            ) from None
        self._collect(done.path)
        return PastPackage(
            model=model,
            version=version,
            digest=done.digest,
            package_path=str(done.path),
            assigned_at=assigned_at,
        )

    def _collect(self, used: Path) -> None:
        """Keep what was asked for within the grace period; remove older past packages."""
        now = time.monotonic()
        self._used[used] = now
        self._used = {p: t for p, t in self._used.items() if now - t < self.materializer.gc_grace_s}
        self.materializer.collect_garbage(set(self._used), now=now)


def _first_assignment(reg: GitRegistry, model: str, stage: str) -> str | None:
    try:
        events = reg.history(model)
    except RegistryError:
        return None
    for event in events:
        if event.event == "assignment" and event.stage == stage:
            return event.time
    return None


# -- the sidecar's folder protocol --------------------------------------------------------------

_answer_decoder = msgspec.json.Decoder(PastAnswer)
_request_decoder = msgspec.json.Decoder(PastRequest)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ask(
    requests_dir: Path,
    model: str,
    *,
    version: str | None = None,
    stage: str | None = None,
    at: float | None = None,
    timeout_s: float = 60.0,
) -> PastPackage:
    """The gateway's side (blocking: call it off the event loop). Raises HistoryQueryError
    with the sync's reason, or reason `unanswered` when the sync does not answer in time."""
    requests_dir.mkdir(parents=True, exist_ok=True)
    try:
        alive = time.time() - (requests_dir / _ALIVE_FILE).stat().st_mtime < _ALIVE_S
    except FileNotFoundError:
        # No sync has ever answered here: this deployment has no source of past versions.
        raise HistoryQueryError(
            f"no sync answers past-version requests in {requests_dir} (run `stageserve sync` "
            "with the same history_requests_dir, or serve with --registry)",
            reason="no_sync",
        ) from None
    if not alive:
        raise HistoryQueryError(
            f"the sync stopped answering past-version requests in {requests_dir}",
            reason="unanswered",
        )
    request = PastRequest(id=uuid.uuid4().hex, model=model, version=version, stage=stage, at=at)
    answer_path = requests_dir / f"{request.id}.answer.json"
    _write_atomically(requests_dir / f"{request.id}.request.json", msgspec.json.encode(request))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                answer = _answer_decoder.decode(answer_path.read_bytes())
            except FileNotFoundError:
                time.sleep(_POLL_S)
                continue
            answer_path.unlink(missing_ok=True)
            if answer.error is not None:
                raise HistoryQueryError(
                    answer.error.message, reason=answer.error.reason, earliest=answer.error.earliest
                )
            assert answer.package is not None
            return answer.package
    finally:
        (requests_dir / f"{request.id}.request.json").unlink(missing_ok=True)
    raise HistoryQueryError(
        f"the sync did not answer for {model} within {timeout_s:.0f} s (is `stageserve sync` "
        f"running with the same history_requests_dir, {requests_dir}?)",
        reason="unanswered",
    )


def answer_pending(past: RegistryPastPackages, requests_dir: Path) -> int:
    """Answer every request waiting in the folder (the sync's side, blocking); returns how
    many were answered. Stale or unreadable requests are removed unanswered."""
    answered = 0
    for path in sorted(requests_dir.glob("*.request.json")):
        try:
            age = time.time() - path.stat().st_mtime
            request = _request_decoder.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable history request %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            continue
        if age > _STALE_REQUEST_S:
            path.unlink(missing_ok=True)
            continue
        try:
            package = past.fetch(
                request.model, version=request.version, stage=request.stage, at=request.at
            )
            answer = PastAnswer(id=request.id, package=package)
        except HistoryQueryError as exc:
            answer = PastAnswer(
                id=request.id,
                error=PastFailure(reason=exc.reason, message=str(exc), earliest=exc.earliest),
            )
        except (RegistryError, ValueError) as exc:
            answer = PastAnswer(id=request.id, error=PastFailure(reason="error", message=str(exc)))
        _write_atomically(requests_dir / f"{request.id}.answer.json", msgspec.json.encode(answer))
        path.unlink(missing_ok=True)
        answered += 1
    for stale in requests_dir.glob("*.answer.json"):  # the gateway gave up waiting
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > _STALE_REQUEST_S:
                stale.unlink()
    return answered


async def serve_requests(
    past: RegistryPastPackages, requests_dir: Path, stop: asyncio.Event, *, poll_s: float = 0.1
) -> None:
    """The sync's loop: answer requests as they appear, until `stop`."""
    requests_dir.mkdir(parents=True, exist_ok=True)
    alive = requests_dir / _ALIVE_FILE
    touched = 0.0
    while not stop.is_set():
        if time.monotonic() - touched >= _ALIVE_EVERY_S:
            touched = time.monotonic()
            with contextlib.suppress(OSError):
                alive.touch()
        try:
            await asyncio.to_thread(answer_pending, past, requests_dir)
        except Exception:  # never stop answering for one bad request
            log.exception("answering history requests failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)
    alive.unlink(missing_ok=True)  # stopped: gateways need not wait for an answer
