"""One model's performance read from the gateway's history store: the time window a query
string asks for, and the one call that `GET /models/{m}/performance` and the console both make
(so the page and the API cannot disagree)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from gateway.errors import InputValidationError
from gateway.history.performance import Performance, parse_duration_s, performance
from gateway.history.store import GatewayHistory
from gateway.pool.model_pool import ModelPool
from registry_sync.history.events import parse_time

__all__ = ["DEFAULT_WINDOW_S", "MAX_BUCKETS", "model_performance", "performance_window"]

DEFAULT_WINDOW_S = 7 * 86400.0
MAX_BUCKETS = 2000
_LATEST_S = 253402300799.0  # 9999-12-31T23:59:59Z


def performance_window(
    query: Mapping[str, str], *, default_window_s: float = DEFAULT_WINDOW_S
) -> tuple[float, float, float]:
    """(since, until, bucket_s) from `window` (a duration ending now) or `from`/`to` (ISO
    8601), and `bucket` (a duration; default 1h up to a 2-day window, else 1d). Bad values
    are a 400 naming the parameter."""
    try:
        until = parse_time(query["to"]).timestamp() if query.get("to") else time.time()
        if query.get("from"):
            since = parse_time(query["from"]).timestamp()
        else:
            since = until - (
                parse_duration_s(query["window"]) if query.get("window") else default_window_s
            )
        span = until - since
        bucket_s = (
            parse_duration_s(query["bucket"])
            if query.get("bucket")
            else 3600.0
            if span <= 2 * 86400
            else 86400.0
        )
    except ValueError as exc:
        raise InputValidationError("query", str(exc), "shape") from None
    if span <= 0:
        raise InputValidationError("query", "`from` must be before `to`", "shape")
    if since < 0 or until > _LATEST_S:
        raise InputValidationError("query", "the window must lie between 1970 and 9999", "shape")
    if span / bucket_s > MAX_BUCKETS:
        raise InputValidationError(
            "query.bucket", f"more than {MAX_BUCKETS} buckets in the window; use a larger one"
        )
    return since, until, bucket_s


async def model_performance(
    history: GatewayHistory,
    pool: ModelPool,
    model: str,
    *,
    since: float,
    until: float,
    bucket_s: float,
) -> Performance:
    """`model`'s performance over [since, until), on the history thread; shadow pairs are
    scored with the output signature of the version serving now. Raises HistoryNotFoundError
    (404) when the gateway keeps no history."""
    reader = history.need_reader()
    current = [lv for lv in pool.loaded_versions() if lv.model == model]
    outputs = list(current[0].manifest.signature.outputs) if current else None
    return await history.run(
        lambda: performance(
            reader, model, since=since, until=until, bucket_s=bucket_s, outputs=outputs
        )
    )
