"""What `/models` and `/models/{model}` report: per stage, what serves and how it got there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from gateway.pool.model_pool import ModelPool
from gateway.shadow.worker import Shadow
from registry_sync.sync.snapshot import ModelSyncError, SyncStatus, read_status

__all__ = ["model_status", "models_status", "sync_health", "sync_overview"]


def _stage_status(pool: ModelPool, model: str, stage: str) -> dict[str, Any]:
    """The registry's assignment, the version serving, and why they differ.

    `assigned_version` is what the registry assigns (None when the sync cannot tell, e.g. a
    tag pointing at a missing object); the gateway is asked to serve it, or, when the sync
    cannot bring it here (`sync_error`), the last good version, which keeps serving."""
    st = pool.statuses.get((model, stage))
    sync_error = pool.stage_sync_errors().get((model, stage))
    route = pool.routes.get(model, {}).get(stage)
    wanted = st.wanted if st is not None else None
    assigned = sync_error.version if sync_error is not None else (wanted and wanted.version)
    out: dict[str, Any] = {
        "stage": stage,
        "assigned_version": assigned,
        "assigned_digest": wanted.digest if wanted and wanted.version == assigned else None,
        # Under a trust policy, for a protected stage: who signed the assignment followed.
        "signed_by": wanted.signed_by if wanted is not None else None,
        "state": st.state if st is not None else "sync_failed",
        "version": None,
        "digest": None,
        "last_error": st.error if st is not None else None,
        "last_error_at": st.error_at if st is not None else None,
        "sync_error": msgspec.to_builtins(sync_error) if sync_error is not None else None,
        "reason": None,
    }
    if route is not None:
        lv = route.loaded
        manifest = lv.manifest
        out.update(
            version=lv.version,
            digest=lv.digest,
            engine=lv.engine,
            # Requests up to this many rows run on the event loop, larger on the pool.
            inline_max_rows=min(lv.inline_max_rows, 10**9),
            load_seconds=round(lv.load_s, 4),
            format=manifest.format,
            signature=msgspec.to_builtins(manifest.signature),
            card=msgspec.to_builtins(manifest.card),
            metrics=manifest.metrics,
            labels=manifest.labels,
        )
    out["reason"] = _reason(out, sync_error)
    return out


def _reason(out: dict[str, Any], sync_error: ModelSyncError | None) -> str | None:
    """Why the stage does not serve its assigned version (None when it does)."""
    if sync_error is not None:
        return f"the sync cannot bring the assigned version here: {sync_error.message}"
    if out["version"] == out["assigned_version"]:
        return None
    if out["state"] == "failed":
        return f"{out['assigned_version']} failed to load: {out['last_error']}"
    return f"{out['assigned_version']} is {out['state']}"


def _sync(pool: ModelPool, model: str) -> dict[str, Any]:
    state = pool.desired
    if state is None:
        return {"generated_at": None, "registry": None, "errors": [], "untrusted": []}
    return {
        "generated_at": state.generated_at,
        "registry": state.registry,
        "errors": [msgspec.to_builtins(e) for e in state.errors if e.model == model],
        # Assignments the trust policy did not follow (unsigned, or not an allowed signer).
        "untrusted": [msgspec.to_builtins(u) for u in state.untrusted if u.model == model],
    }


def model_status(
    pool: ModelPool, model: str, shadow: Shadow | None = None
) -> dict[str, Any] | None:
    """One model's stages, or None when the desired state does not name it."""
    errored = {s for m, s in pool.stage_sync_errors() if m == model}
    stages = sorted(set(pool.wanted_stages(model)) | errored)
    desired = pool.desired
    has_errors = desired is not None and (
        any(e.model == model for e in desired.errors)
        or any(u.model == model for u in desired.untrusted)
    )
    if not stages and not has_errors:
        return None
    plans = shadow.plans.get(model, {}) if shadow is not None else {}
    return {
        "name": model,
        "stages": {s: _stage_status(pool, model, s) for s in stages},
        "sync": _sync(pool, model),
        # Which stages are shadowed by which (details: GET /models/{model}/shadow).
        "shadow": [plan.describe() for plan in plans.values()],
    }


def models_status(pool: ModelPool, shadow: Shadow | None = None) -> list[dict[str, Any]]:
    names = set(pool.wanted_models())
    if pool.desired is not None:
        names |= {e.model for e in pool.desired.errors}
    return [s for name in sorted(names) if (s := model_status(pool, name, shadow)) is not None]


def sync_overview(
    status_path: Path | None, live: Callable[[], SyncStatus | None] | None = None
) -> dict[str, Any] | None:
    """How the registry polls went (embedded: the in-process loop's own record, which a full
    disk cannot make stale; sidecar: its status file): a registry outage or a failure of the
    sync loop never changes the snapshot, so this is where it shows."""
    current = live() if live is not None else None
    if current is not None:
        return msgspec.to_builtins(current)  # type: ignore[no-any-return]
    if status_path is None:
        return None
    try:
        return msgspec.to_builtins(read_status(status_path))  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return {"result": "unknown", "message": f"unreadable sync status: {exc}"}


def sync_health(overview: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sync's state without messages or the registry's location (for /readyz)."""
    if overview is None:
        return None
    keys = ("result", "last_attempt_at", "last_success_at", "consecutive_failures")
    return {k: overview.get(k) for k in (*keys, "loop_failures", "last_loop_failure_at")}
