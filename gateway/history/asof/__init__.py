"""Predictions as of a past instant: which version served (or was assigned to) a stage then,
its package fetched and verified on demand, loaded into a bounded pool of its own.

query.py (the `as_of` and `basis` parameters), resolve.py (instant -> version -> package),
pool.py (the LRU pool of past versions), metrics.py.
"""

__all__ = ["metrics", "pool", "query", "resolve"]
