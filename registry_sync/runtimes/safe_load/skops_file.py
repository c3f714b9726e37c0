"""Load a scikit-learn model saved in the skops format under the same allowlist as pickles.

skops (skops.io) never calls what a file names the way pickle's REDUCE does: it rebuilds each
object of a type it was told to trust from its recorded state. Every type and function the
file's schema names must pass the allowlist (`resolve_global`); of those, skops trusts its own
default set (scikit-learn's estimators, numpy and scipy types and ufuncs, the loss and link
objects of gradient boosting), and stageserve adds only the tree node stores whose content it
checks after loading (trees.py: the types skops refuses because a crafted node index reads out
of bounds). Any other type skops flags is refused, naming it, unless `unpickle_allow` lists it:
never everything `get_untrusted_types` reports.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

from registry_sync.runtimes.safe_load.policy import LoadPolicy, RefusedError, resolve_global
from registry_sync.runtimes.safe_load.trees import CHECKED_TYPES, check_trees

__all__ = ["SKOPS_SUFFIX", "loads_skops"]

SKOPS_SUFFIX = ".skops"


def loads_skops(data: bytes, policy: LoadPolicy | None = None) -> Any:
    """The model in `data`; RefusedError names the first type the allowlist does not trust."""
    import skops.io

    policy = policy or LoadPolicy()
    for module, name in _named_globals(data):
        resolve_global(module, name, policy)
    untrusted = skops.io.get_untrusted_types(data=data)
    refused = sorted(
        name for name in untrusted if name not in CHECKED_TYPES and not _listed(name, policy)
    )
    if refused:
        raise RefusedError(
            refused[0],
            "skops does not trust it by default and stageserve does not check its content; "
            "to trust it, list it in the setting unpickle_allow",
        )
    model = skops.io.loads(data, trusted=untrusted)
    check_trees(model)
    return model


def _listed(full_name: str, policy: LoadPolicy) -> bool:
    module, _, name = full_name.rpartition(".")
    return policy.is_extra(module, name)


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
