"""Shadow traffic: a stage's answered requests predicted again by another stage's version.

`Shadow` (worker.py) queues and predicts off the answer's path (predict.py: in the shadow
process, process.py + child.py, or on a thread, at the OS priority of priority.py),
`PairBook` (pairs.py) and `PairStats` (stats.py) compare, `ShadowMetrics` (metrics.py)
exports; config.py holds the plans. It reads the pool; the predict route calls
`Shadow.offer` after answering.
"""

__all__ = [
    "child",
    "compare",
    "config",
    "metrics",
    "pairs",
    "predict",
    "priority",
    "process",
    "stats",
    "worker",
]
