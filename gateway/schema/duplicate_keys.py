"""Refuse JSON objects that repeat a key (422), at the cost of one `bytes.count` per request.

msgspec, like most JSON parsers, keeps the last of two equal keys; a proxy that validates the
first one could then be bypassed. Proving that a body has no repeated key needs no parse:
every key is followed by a ':' outside strings, so the body's count of ':' bytes bounds the
number of keys from above, and the decoder tells how many distinct keys it saw (at least).
When the two numbers meet, no key can repeat. Only when they do not (a string holding a ':',
an explicit `null` the decoder cannot tell from a missing key) is the body parsed again,
exactly, with the standard library's parser and a hook that sees every object's pairs.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import InputValidationError, MalformedRequestError, shown

__all__ = ["refuse_duplicate_keys"]


class _RepeatedKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKeyError(key)
        seen.add(key)


def refuse_duplicate_keys(body: bytes, distinct_keys: int) -> None:
    """Raise InputValidationError if some object in `body` (valid JSON, already decoded)
    repeats a key; `distinct_keys` is a lower bound of the distinct keys the decoder saw."""
    if body.count(b":") == distinct_keys:
        return
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _RepeatedKeyError as exc:
        raise InputValidationError(
            "$", f"key {shown(exc.key)!r} appears twice in one object", "duplicate"
        ) from None
    except RecursionError:
        raise MalformedRequestError("request body nests too deeply") from None
    except ValueError:  # msgspec accepted it: nothing the stricter check adds
        return
