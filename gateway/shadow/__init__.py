"""Shadow traffic: a stage's answered requests predicted again by another stage's version.

`Shadow` (worker.py) queues and predicts off the answer's path, `PairBook` (pairs.py) and
`PairStats` (stats.py) compare, `ShadowMetrics` (metrics.py) exports; config.py holds the
plans. It reads the pool; the predict route calls `Shadow.offer` after answering.
"""

__all__ = ["compare", "config", "metrics", "pairs", "predict", "stats", "worker"]
