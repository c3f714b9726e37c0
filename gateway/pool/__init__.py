"""The model pool: loaded versions, the (model, stage) route table, and how swaps happen.

`ModelPool.reconcile(state)` (model_pool.py) loads and warms up new versions, switches routes
in one assignment and releases old versions after their in-flight requests; desired states
arrive from a `DesiredStateSource` (snapshot_source.py). Inference placement: inference.py
(every route's model call goes through `Inference.run`); adaptive batching: batching.py;
per-model limits on concurrent inferences and inference timeouts: admission.py; what is
loaded frozen out of CPython's garbage collector (short collections): heap.py.
"""

__all__ = [
    "admission",
    "batching",
    "heap",
    "inference",
    "loaded",
    "model_pool",
    "route_table",
    "snapshot_source",
]
