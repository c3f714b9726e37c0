"""Questions about the past, answered by the gateway: predictions as of a past instant,
outcomes fed back and scored, performance over time, replays and reports.

store.py (the gateway's handle on its history store), scoring.py + feedback.py (outcomes),
performance.py (per version and time window), query.py (one model's, as the API and the
console read it), asof/ (the as-of pool and resolution),
replay.py and report/ (the `stageserve replay` and `stageserve report` commands).
"""

__all__ = ["asof", "feedback", "performance", "query", "replay", "report", "scoring", "store"]
