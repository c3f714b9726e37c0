"""One worker process: a whole gateway in sidecar mode, on the socket its parent gave it.

Started by the supervisor as `python -m gateway.workers.worker` with its `WorkerSpec` (JSON)
on stdin and its listening socket inherited; it follows `<cache>/snapshot.json` (the parent's
sync writes it in embedded mode), appends to the shared audit file under the workers' lock,
and sends its activations, readiness and metrics to the parent (link.py). It holds no
registry credentials: the settings it gets have no `registry`.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from pathlib import Path

import msgspec

from gateway.settings import Settings

__all__ = ["WorkerSpec", "main"]


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the parent tells a worker it starts."""

    index: int
    count: int
    fd: int
    control: str
    lock_dir: str
    cache_dir: str
    # The parent runs the sync (embedded mode): a failed load asks it to repair the package.
    embedded: bool
    settings: Settings


class _WorkerField(logging.Filter):
    """Adds `"worker": i` to every JSON log line of this process."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = (
            {**fields, "worker": self.index} if isinstance(fields, dict) else {"worker": self.index}
        )
        return True


def main() -> int:
    from gateway.app import create_app
    from gateway.pool.snapshot_source import SnapshotFileSource
    from gateway.server import http_server
    from gateway.telemetry.metrics import GatewayMetrics
    from gateway.workers.link import ParentLink
    from registry_sync.logs import configure_logging
    from registry_sync.sync.snapshot import STATUS_FILE

    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=WorkerSpec)
    settings = spec.settings
    configure_logging(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(spec.index))
    listener = socket.socket(fileno=spec.fd)
    cache = Path(spec.cache_dir)
    link = ParentLink(Path(spec.control), spec.index, Path(spec.lock_dir))
    metrics = GatewayMetrics()
    app = create_app(
        settings,
        state_source=SnapshotFileSource(cache),
        metrics=metrics,
        activation_listeners=[link.activation],
        sync_status_path=cache / STATUS_FILE,
        on_load_failure=link.full_check if spec.embedded else None,
        siblings=link,
    )
    server = http_server(settings, app, metrics)
    # The parent is gone (killed): stop now, nobody drains us or reads our journal events.
    link.on_parent_gone = lambda: server.handle_exit(signal.SIGINT, None)
    server.run_until_stopped(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
