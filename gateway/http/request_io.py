"""Reading a predict request: the body (bounded by bytes) and the `stage` query parameter."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from litestar.types import Receive

from gateway.errors import PayloadTooLargeError

__all__ = ["read_body", "stage_of"]


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body; 413 as soon as the declared or received size passes `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message: Any = await receive()
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        if not more and not chunks:
            return chunk  # the common case: one message, no copy
        chunks.append(chunk)
    return b"".join(chunks)


def stage_of(query: bytes) -> str:
    """The last `stage=` of the query string, or "" when there is none."""
    values = parse_qs(query.decode("latin-1")).get("stage")
    return values[-1] if values else ""


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body of {size} bytes is over the limit of {limit}",
        {"bytes": size, "max_body_bytes": limit},
    )
