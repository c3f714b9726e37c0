"""The edge's limits, and fitting the connection cap under the process's file-descriptor limit."""

from __future__ import annotations

import logging
import resource

import msgspec

__all__ = ["FD_RESERVE", "EdgeLimits", "fit_to_fd_limit"]

log = logging.getLogger("stageserve.edge")

# Descriptors kept for everything that is not a client connection: the listening socket,
# model files, the audit file and journal, the snapshot watcher, inference threads' files.
FD_RESERVE = 64


class EdgeLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one client connection may cost (see the README's configuration table)."""

    max_header_bytes: int = 65_536
    """Request line and header block larger than this: 431, connection closed."""
    max_headers: int = 100
    """More header fields than this: 431, connection closed."""
    header_timeout_s: float = 10.0
    """A request's line and headers must have arrived this long after its first byte (or
    after the connection opened): else 408 (or, when nothing came, a plain close)."""
    body_timeout_s: float = 30.0
    """A request's body must have arrived this long after its headers: else 408."""
    max_connections: int = 1000
    """Connections served at once; past it, a new connection's request gets 503 +
    Retry-After, and past `max_connections + overflow` it is closed at once."""
    retry_after_s: int = 5
    """`Retry-After` of an overload 503."""

    @property
    def overflow(self) -> int:
        """Connections over the cap that still get their 503 (not a reset)."""
        return max(16, self.max_connections // 4)

    @property
    def descriptors_needed(self) -> int:
        return self.max_connections + self.overflow + FD_RESERVE


def fit_to_fd_limit(limits: EdgeLimits) -> EdgeLimits:
    """Raise the soft RLIMIT_NOFILE to what the connection cap needs (up to the hard limit);
    if the hard limit is lower, lower the cap to fit it, and say so. Without this, idle
    sockets fill the descriptor table and new connections are reset instead of refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = limits.descriptors_needed
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    # overflow = max(16, cap // 4): solve cap + overflow + reserve <= soft for the cap.
    budget = soft - FD_RESERVE
    cap = max(1, min(budget * 4 // 5, budget - 16))
    log.warning(
        "max_connections %d needs %d file descriptors but the limit is %d (ulimit -n); "
        "serving at most %d connections",
        limits.max_connections,
        need,
        soft,
        cap,
    )
    return msgspec.structs.replace(limits, max_connections=cap)
