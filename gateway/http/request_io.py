"""Reading a predict request: the body (bounded by bytes, compressed or not), its media type
and the query parameters."""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import parse_qs

from litestar.types import Receive

from gateway.errors import (
    MalformedRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)

__all__ = ["decode_content", "media_type", "query_value", "read_body", "stage_of"]

# Content-Encoding -> zlib's wbits: gzip framing, or zlib framing (what HTTP calls "deflate").
_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body; 413 as soon as the declared or received size passes `limit`."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message: Any = await receive()
        if message["type"] == "http.disconnect":  # the edge timed the body out, or the client left
            raise RequestTimeoutError("the request body did not arrive in time")
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        if not more and not chunks:
            return chunk  # the common case: one message, no copy
        chunks.append(chunk)
    return b"".join(chunks)


def stage_of(query: bytes, default: str) -> str:
    """The last `stage=` of the query string (an empty one stays empty: no stage is named
    "", so it is refused, as the OpenAPI document's enum says), else `default`."""
    if not query:
        return default
    values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("stage")
    return values[-1] if values else default


def query_value(query: bytes, key: str) -> str:
    """The last `key=` of the query string, or "" when there is none."""
    values = parse_qs(query.decode("latin-1")).get(key)
    return values[-1] if values else ""


def media_type(content_type: bytes | None) -> bytes | None:
    """`application/json` of `Application/JSON; charset=utf-8`; None when there is no header."""
    if content_type is None:
        return None
    return content_type.split(b";", 1)[0].strip().lower()


def decode_content(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """The body with its Content-Encoding (gzip, deflate) undone, never more than `limit`
    bytes decompressed (413 past it, so a small bomb cannot fill the memory)."""
    if encoding is None:
        return body
    name = encoding.strip().lower()
    if name in (b"", b"identity"):
        return body
    wbits = _WBITS.get(name)
    if wbits is None:
        raise UnsupportedMediaTypeError(
            "content-encoding must be gzip or deflate (or none)",
            {"supported": ["gzip", "deflate", "identity"]},
        )
    inflate = zlib.decompressobj(wbits)
    try:
        data = inflate.decompress(body, limit + 1)
    except zlib.error:
        raise MalformedRequestError(
            f"the body is not valid {name.decode()} data", {"content_encoding": name.decode()}
        ) from None
    if len(data) > limit or inflate.unconsumed_tail:
        raise PayloadTooLargeError(
            f"decompressed request body is over the limit of {limit} bytes",
            {"max_body_bytes": limit},
        )
    if not inflate.eof:
        raise MalformedRequestError(
            f"the {name.decode()} body is cut short", {"content_encoding": name.decode()}
        )
    return data


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body of {size} bytes is over the limit of {limit}",
        {"bytes": size, "max_body_bytes": limit},
    )
