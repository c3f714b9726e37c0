"""Edits of `artifacts.yaml` that keep what its writers put there.

The file is shared with people and with gto (`gto annotate` writes it, with ruamel.yaml):
an edit changes only the entry it is about, and in that entry only the keys stageserve owns.
Comments, key order, quoting, other entries and fields such as `custom` stay as written
(ruamel.yaml's round-trip mode, the library gto itself uses).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from registry_sync.errors import ManifestError

__all__ = ["register_entry", "remove_entry"]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long description
    return yaml


def _load(raw: bytes | None, where: str) -> CommentedMap:
    if not raw or not raw.strip():
        return CommentedMap()
    try:
        data = _yaml().load(raw)
    except YAMLError as exc:
        raise ManifestError(where, f"artifacts.yaml is not valid YAML: {exc}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ManifestError(where, "artifacts.yaml is not a mapping of artifact names")
    return data


def _dump(data: CommentedMap) -> bytes:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue().encode()


def register_entry(
    raw: bytes | None,
    name: str,
    *,
    path: str,
    description: str,
    labels: Sequence[str],
    where: str = "artifacts.yaml",
) -> bytes:
    """`raw` with NAME's entry added (at the end) or merged: `type` and `path` are set, a
    non-empty package description replaces the entry's, the package's labels are added to
    the entry's; every other key, and everything else in the file, is kept."""
    data = _load(raw, where)
    entry = data.get(name)
    if not isinstance(entry, CommentedMap):
        entry = CommentedMap()
        entry["type"] = "model"
        entry["path"] = path
        entry["virtual"] = False
        entry["description"] = description
        entry["labels"] = sorted(set(labels))
        data[name] = entry
        return _dump(data)
    entry["type"] = "model"
    entry["path"] = path
    if "virtual" in entry:
        entry["virtual"] = False
    if description:
        entry["description"] = description
    existing = entry.get("labels")
    if isinstance(existing, list):
        merged: Any = existing if isinstance(existing, CommentedSeq) else CommentedSeq(existing)
        merged.extend(label for label in sorted(set(labels)) if label not in existing)
        entry["labels"] = merged
    elif labels:
        entry["labels"] = sorted(set(labels))
    return _dump(data)


def remove_entry(raw: bytes | None, name: str, *, where: str = "artifacts.yaml") -> bytes:
    """`raw` without NAME's entry, everything else as written."""
    data = _load(raw, where)
    data.pop(name, None)
    return _dump(data)
