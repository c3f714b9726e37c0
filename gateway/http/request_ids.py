"""Request ids: the server's own, unique and cheap; a client's `x-request-id` kept beside it.

The server's id keys the audit record and the response (`x-request-id`, `request_id`): a
client's id can repeat or be forged, so it is never used in its place. A client id that is
short printable ASCII is recorded (`client_request_id`) and echoed in `x-client-request-id`.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["RequestIds"]

_MAX_REQUEST_ID = 128


class RequestIds:
    """Short unique ids: a random per-process prefix and a counter (no uuid4 per request).

    The prefix is 64 random bits: the id keys audit records of every replica and restart in
    one store (PostgreSQL is idempotent by it), where 32 bits would collide by the birthday
    bound after some tens of thousands of process starts."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._count):x}"

    @staticmethod
    def client(incoming: bytes) -> str | None:
        """The client's id if it is short, printable ASCII without spaces (it goes back in a
        header and into the audit record); else None (ignored)."""
        if incoming and len(incoming) <= _MAX_REQUEST_ID and incoming.isascii():
            text = incoming.decode()
            if text.isprintable() and " " not in text:
                return text
        return None
