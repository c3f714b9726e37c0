"""The control channel between the parent and each worker: messages and their framing.

One Unix stream socket per worker (in the parent's private runtime folder), each message a
4-byte big-endian length and a msgpack-encoded tagged `msgspec.Struct`. Nothing here is on
the request path: messages flow on swaps, readiness changes and scrapes.
"""

from __future__ import annotations

import asyncio
import struct

import msgspec

from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.merge import Family

__all__ = [
    "Activation",
    "Collect",
    "Families",
    "FullCheck",
    "Gather",
    "Hello",
    "Message",
    "PodReady",
    "Ready",
    "read_message",
    "write_message",
]

_LENGTH = struct.Struct(">I")
# A scrape of a few hundred series is tens of KiB; a bound keeps a bug from allocating GiBs.
_MAX_BYTES = 64 << 20


class Hello(msgspec.Struct, frozen=True, tag=True):
    """Worker → parent, first: which worker this connection is."""

    worker: int
    pid: int


class Activation(msgspec.Struct, frozen=True, tag=True):
    """Worker → parent: its pool's activation event (the parent keeps one journal)."""

    event: ActivationEvent


class Ready(msgspec.Struct, frozen=True, tag=True):
    """Worker → parent: its own readiness changed (what it misses, when not ready)."""

    ready: bool
    missing: list[str]


class FullCheck(msgspec.Struct, frozen=True, tag=True):
    """Worker → parent (embedded): a package failed to load; re-hash and repair it."""

    package_path: str


class Gather(msgspec.Struct, frozen=True, tag=True):
    """Worker → parent: a scrape; answer with every other process's families. Carries the
    worker's own, which the parent keeps should the worker die (its counters live on)."""

    id: int
    families: list[Family]


class Collect(msgspec.Struct, frozen=True, tag=True):
    """Parent → worker: answer with this worker's own families."""

    id: int


class Families(msgspec.Struct, frozen=True, tag=True):
    """The answer to Gather or Collect."""

    id: int
    families: list[Family]


class PodReady(msgspec.Struct, frozen=True, tag=True):
    """Parent → worker: whether every worker is ready (what the others miss, when not)."""

    ready: bool
    missing: list[str]


Message = Hello | Activation | Ready | FullCheck | Gather | Collect | Families | PodReady
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def write_message(writer: asyncio.StreamWriter, message: Message) -> None:
    """Queue one message (the caller awaits `writer.drain()` when it must)."""
    data = _encoder.encode(message)
    writer.write(_LENGTH.pack(len(data)) + data)


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None when the other side closed the connection."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        if length > _MAX_BYTES:
            raise ValueError(f"control message of {length} bytes")
        return _decoder.decode(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
