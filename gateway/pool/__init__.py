"""The model pool: loaded versions, the (model, stage) route table, and how swaps happen.

`ModelPool.reconcile(state)` (model_pool.py) loads and warms up new versions, switches routes
in one assignment and releases old versions after their in-flight requests; desired states
arrive from a `DesiredStateSource` (snapshot_source.py). Inference placement: inference.py.
"""

__all__ = ["inference", "loaded", "model_pool", "route_table", "snapshot_source"]
