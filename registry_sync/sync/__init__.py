"""Registry sync: resolve each (model, stage), materialize and verify, write the snapshot.

`RegistrySync.run_once` (registry_sync.py) is one pass; `SyncLoop` (loop.py) decides when;
`build_loop` (setup.py) wires both modes; snapshot.py is the contract with the gateway;
cli.py is `stageserve sync`. Never imports the gateway.
"""

__all__ = ["cli", "loop", "materialize", "metrics", "reader", "registry_sync", "setup", "snapshot"]
