"""What a (model, stage) serves (`Route`, everything a request needs, prebuilt) and its status."""

from __future__ import annotations

from gateway.pool.loaded import LoadedVersion
from gateway.telemetry.metrics import RouteMetrics
from registry_sync.sync.snapshot import DesiredEntry

__all__ = ["Route", "StageStatus"]


class Route:
    """What one (model, stage) serves right now, with everything a request needs prebuilt."""

    __slots__ = ("headers", "loaded", "metrics", "model", "stage", "version_headers")

    def __init__(self, model: str, stage: str, loaded: LoadedVersion, metrics: RouteMetrics):
        self.model = model
        self.stage = stage
        self.loaded = loaded
        self.metrics = metrics
        # Raw ASGI header pairs; the request adds content-length and x-request-id. Every
        # response a version handled carries the version headers, errors included.
        self.version_headers: tuple[tuple[bytes, bytes], ...] = (
            (b"x-model-version", loaded.version.encode()),
            (b"x-model-digest", loaded.digest.encode()),
        )
        self.headers: tuple[tuple[bytes, bytes], ...] = (
            (b"content-type", b"application/json"),
            *self.version_headers,
        )


class StageStatus:
    """Load state of one (model, stage) as /models and /readyz show it."""

    __slots__ = ("error", "error_at", "state", "wanted")

    def __init__(self, wanted: DesiredEntry) -> None:
        self.wanted = wanted
        # pending (not tried yet), loading, loaded (serving the wanted version), failed.
        self.state = "pending"
        self.error: str | None = None
        self.error_at: str | None = None
