"""The access policy: roles -> the actions they may take on model and stage patterns.

    access_policy:                       # in the settings file
      pricing:                           # a role (from an API key entry or a JWT claim)
        - {actions: [predict, read], models: ["cost_*"], stages: [prod]}
      monitoring:
        - {actions: [metrics]}

Patterns are shell-style (`fnmatch`, case-sensitive); a rule without `models` or `stages`
matches all. A principal may do what any of its roles allows; nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from gateway.access.principal import Principal
from gateway.settings import AccessRule

__all__ = ["ACTIONS", "AccessPolicy"]

ACTIONS = ("predict", "read", "metrics", "feedback")
_CACHE_MAX = 10_000


class AccessPolicy:
    def __init__(self, roles: Mapping[str, Sequence[AccessRule]]) -> None:
        self.roles = {role: tuple(rules) for role, rules in roles.items()}
        # (roles, action, model, stage) -> allowed: a request pays for one dict lookup.
        self._decisions: dict[tuple[tuple[str, ...], str, str, str], bool] = {}

    def allows(self, principal: Principal, action: str, model: str = "*", stage: str = "*") -> bool:
        key = (principal.roles, action, model, stage)
        found = self._decisions.get(key)
        if found is None:
            found = any(
                action in rule.actions
                and _matches(rule.models, model)
                and _matches(rule.stages, stage)
                for role in principal.roles
                for rule in self.roles.get(role, ())
            )
            if len(self._decisions) >= _CACHE_MAX:
                self._decisions.clear()
            self._decisions[key] = found
        return found

    def allows_some_stage(self, principal: Principal, action: str, model: str) -> bool:
        """May the principal take `action` on at least one stage of `model`?"""
        return any(
            action in rule.actions and _matches(rule.models, model)
            for role in principal.roles
            for rule in self.roles.get(role, ())
        )

    def sees(self, principal: Principal, model: str) -> bool:
        """May the principal take any action on some stage of `model`? If not, the model is
        answered exactly like one that does not exist (no other team's names leak)."""
        return any(
            _matches(rule.models, model)
            for role in principal.roles
            for rule in self.roles.get(role, ())
            if {"predict", "read", "feedback"} & set(rule.actions)
        )


def _matches(patterns: Sequence[str], value: str) -> bool:
    return not patterns or any(fnmatchcase(value, pattern) for pattern in patterns)
