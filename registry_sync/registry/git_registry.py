"""`GitRegistry`: the repository handle with its queries and writes, as one object."""

from __future__ import annotations

from registry_sync.registry import queries, writer
from registry_sync.registry.repository import RegistryRepo

__all__ = ["GitRegistry"]


class GitRegistry(RegistryRepo):
    """A registry to read and write: `list_models`, `show`, `which`, `history`,
    `resolve_stages` (queries.py) and `register`, `assign`, `unassign`, `deregister`,
    `deprecate` (writer.py), over the handle's `view()` (repository.py)."""

    list_models = queries.list_models
    show = queries.show
    which = queries.which
    history = queries.history
    resolve_stages = queries.resolve_stages
    resolve_all = queries.resolve_stages
    refused_assignments = queries.refused_assignments

    register = writer.register
    assign = writer.assign
    unassign = writer.unassign
    deregister = writer.deregister
    deprecate = writer.deprecate
