"""Load a scikit-learn model saved in the skops format under the same allowlist as pickles.

skops (skops.io) never calls what a file names the way pickle's REDUCE does: it rebuilds each
object of a type it was told to trust from its recorded state. Which types to trust is the
allowlist's decision: every type and function the file's schema names must pass
`resolve_global`, and only then is it handed to skops as trusted.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

from registry_sync.runtimes.safe_load.policy import LoadPolicy, RefusedError, resolve_global

__all__ = ["SKOPS_SUFFIX", "loads_skops"]

SKOPS_SUFFIX = ".skops"


def loads_skops(data: bytes, policy: LoadPolicy | None = None) -> Any:
    """The model in `data`; RefusedError names the first type the allowlist does not trust."""
    import skops.io

    policy = policy or LoadPolicy()
    for module, name in _named_globals(data):
        resolve_global(module, name, policy)
    untrusted = skops.io.get_untrusted_types(data=data)
    return skops.io.loads(data, trusted=untrusted)


def _named_globals(data: bytes) -> Iterator[tuple[str, str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RefusedError("the skops file", f"is not a skops archive: {exc}") from None
    seen: set[tuple[str, str]] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, name = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(name, str) and (module, name) not in seen:
                seen.add((module, name))
                yield module, name
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
