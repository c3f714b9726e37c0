"""Request rates, error rates and latency percentiles from the gateway's own counters.

The counters only grow; a rate needs two readings. `TrafficSampler` keeps readings taken
when a console page asks (at most one a second, the last 15 minutes) plus one taken when the
app started, so a page always has a baseline: the rate over the last minute once a minute of
readings exists, else since the start. Nothing runs when nobody looks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["Reading", "TrafficSampler", "Window", "quantile"]

_MIN_SPACING_S = 1.0
_KEEP_S = 900.0


@dataclass(frozen=True)
class Reading:
    at: float
    # (model, stage, version, status) -> requests
    requests: dict[tuple[str, ...], float]
    # (model, stage, version) -> per-bucket counts of request latency
    latency: dict[tuple[str, ...], list[int]]


@dataclass(frozen=True)
class Window:
    """What happened between two readings."""

    seconds: float
    requests: dict[tuple[str, ...], float]
    latency: dict[tuple[str, ...], list[int]]
    bounds: tuple[float, ...]

    def rate(self, match: Callable[[tuple[str, ...]], bool]) -> float:
        if self.seconds <= 0:
            return 0.0
        return sum(v for k, v in self.requests.items() if match(k)) / self.seconds

    def latency_quantile(self, q: float, key: tuple[str, ...]) -> float | None:
        counts = self.latency.get(key)
        return quantile(q, self.bounds, counts) if counts else None


def quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """Prometheus' histogram_quantile over one histogram: linear within the bucket that holds
    the q-th observation; the +Inf bucket answers with the largest finite bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else 0.0
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bounds[-2] if len(bounds) > 1 else None


class TrafficSampler:
    def __init__(
        self, metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self.bounds = metrics.request_duration_seconds.bounds
        self._readings: deque[Reading] = deque()
        self._readings.append(self._read())

    def _read(self) -> Reading:
        return Reading(
            at=self._clock(),
            requests=self._metrics.requests_total.values(),
            latency=self._metrics.request_duration_seconds.counts(),
        )

    def window(self, seconds: float = 60.0) -> Window:
        """The traffic of (about) the last `seconds`, taking a reading now if due."""
        now = self._clock()
        if now - self._readings[-1].at >= _MIN_SPACING_S:
            self._readings.append(self._read())
            while len(self._readings) > 2 and now - self._readings[1].at > _KEEP_S:
                self._readings.popleft()
        last = self._readings[-1]
        # The newest reading at least `seconds` old; else the oldest (the app's start).
        base = self._readings[0]
        for reading in self._readings:
            if last.at - reading.at < seconds:
                break
            base = reading
        return Window(
            seconds=last.at - base.at,
            requests={k: v - base.requests.get(k, 0.0) for k, v in last.requests.items()},
            latency={
                k: [a - b for a, b in zip(v, base.latency.get(k, [0] * len(v)), strict=True)]
                for k, v in last.latency.items()
            },
            bounds=self.bounds,
        )
