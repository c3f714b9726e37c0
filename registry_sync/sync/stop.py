"""Stop events a component may set without stopping anyone else's work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["own_stop_event"]


@contextlib.asynccontextmanager
async def own_stop_event(parent: asyncio.Event) -> AsyncIterator[asyncio.Event]:
    """An event that is set when `parent` is set, or when the block ends.

    Hand this, never a shared event, to code that sets the event it is given: watchfiles'
    `awatch` sets its `stop_event` when it is cancelled, and a shared event would then stop
    every other task waiting on it (the gateway's follow and retry loops, once).
    """
    own = asyncio.Event()

    async def follow_parent() -> None:
        await parent.wait()
        own.set()

    follower = asyncio.create_task(follow_parent(), name="stop-follower")
    try:
        yield own
    finally:
        own.set()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
