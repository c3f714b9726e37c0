"""Several worker processes serving one port: `stageserve serve --workers N`.

A parent process (supervisor.py) binds the port, runs the registry sync in embedded mode
(writing the snapshot every worker follows, the sidecar layout inside one pod), owns the
activation journal, and starts, watches and stops the workers (worker.py); each worker is a
whole gateway in sidecar mode. They talk over one Unix socket (control.py, link.py, hub.py).
"""

__all__: list[str] = []
