"""The trust policy: which stages are protected, and whose signatures count there.

    trust_policy:                                  # in the sync's settings file
      - stages: [prod]                             # shell patterns
        models: ["*"]                              # default: every model
        allowed_signers: /etc/stageserve/trust/allowed_signers   # SSH (git's format)
        revoked_keys: /etc/stageserve/trust/revoked_keys         # optional (ssh-keygen -Y)
        gpg_keys: [8F2C...E1A9]                    # OpenPGP fingerprints allowed
        gpg_keyring: /etc/stageserve/trust/signers.asc           # their public keys

The files come from the sync's own configuration (a mounted Secret), never from the
registry, so whoever can push tags cannot also say whose tags to trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import msgspec

from registry_sync.errors import SettingsError

__all__ = ["TrustPolicy", "TrustRule"]


class TrustRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stages: list[str]
    """Stage patterns this rule protects."""
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Model patterns it applies to."""
    allowed_signers: str | None = None
    """An SSH allowed_signers file (`principal [options] key`, see ssh-keygen(1))."""
    revoked_keys: str | None = None
    """An SSH revocation file (a KRL or public keys): their signatures never count."""
    gpg_keys: list[str] = []
    """OpenPGP key fingerprints (40 hex digits) whose signatures count."""
    gpg_keyring: str | None = None
    """A file of the OpenPGP public keys to verify with (armored or binary)."""

    def covers(self, model: str, stage: str) -> bool:
        return any(fnmatchcase(stage, p) for p in self.stages) and any(
            fnmatchcase(model, p) for p in self.models
        )

    def describe(self) -> str:
        return f"stages {', '.join(self.stages)} of models {', '.join(self.models)}"


class TrustPolicy:
    """The rules in order: the first that covers a (model, stage) decides."""

    def __init__(self, rules: Sequence[TrustRule]) -> None:
        self.rules = tuple(rules)
        for index, rule in enumerate(self.rules):
            where = f"trust_policy[{index}]"
            if not rule.allowed_signers and not rule.gpg_keys:
                raise SettingsError(where, "settings", "names no allowed_signers and no gpg_keys")
            if rule.gpg_keys and not rule.gpg_keyring:
                raise SettingsError(where, "settings", "gpg_keys need a gpg_keyring")
            for name in ("allowed_signers", "revoked_keys", "gpg_keyring"):
                path = getattr(rule, name)
                if path and not Path(path).is_file():
                    raise SettingsError(f"{where}.{name}", "settings", f"no such file: {path}")

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, model: str, stage: str) -> TrustRule | None:
        return next((rule for rule in self.rules if rule.covers(model, stage)), None)
