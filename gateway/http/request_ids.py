"""Request ids: an incoming `x-request-id` is kept, else a short unique one is made cheaply."""

from __future__ import annotations

import itertools
import os

__all__ = ["RequestIds"]

_MAX_REQUEST_ID = 128


class RequestIds:
    """Short unique ids: a random per-process prefix and a counter (no uuid4 per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._count):x}"

    def keep_or_new(self, incoming: bytes | None) -> str:
        # An incoming id is kept when it is short, printable ASCII (it goes back in a header).
        if incoming and len(incoming) <= _MAX_REQUEST_ID and incoming.isascii():
            text = incoming.decode()
            if text.isprintable() and " " not in text:
                return text
        return self.next()
