"""Check a tag's signature with git itself, against one rule of the trust policy.

`git verify-tag --raw <tag object>` checks what the tag object says (the commit it points
at, its name, tagger, time and message) against its signature: SSH signatures through
ssh-keygen with the rule's allowed_signers (and revocation) file, OpenPGP ones through gpg
with a keyring made from the rule's keys. The user's own git and gpg configuration is not
read. Results are cached by tag object id: a tag object never changes, and a rewritten tag
is another object (whose old signature then fails).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Literal

import msgspec

from registry_sync.registry.git import Git, TagRecord
from registry_sync.registry.trust.policy import TrustPolicy, TrustRule

__all__ = ["SignatureCheck", "TagTrust"]

Status = Literal["trusted", "untrusted", "unsigned"]
_SSH_GOOD = re.compile(r'Good "git" signature for (?P<who>.+?) with (?P<kind>\S+) key (?P<key>\S+)')
_SSH_KEY = re.compile(r'Good "git" signature with (?P<kind>\S+) key (?P<key>\S+)')
_TIMEOUT_S = 30


class SignatureCheck(msgspec.Struct, frozen=True, kw_only=True):
    """What a tag's signature proves under the policy."""

    status: Status
    signer: str | None = None
    """The allowed_signers principal (SSH) or the key's user id (OpenPGP)."""
    key: str | None = None
    """SHA256:... (SSH) or the OpenPGP fingerprint."""
    reason: str = ""

    @property
    def trusted(self) -> bool:
        return self.status == "trusted"

    def describe(self) -> str:
        if self.trusted:
            return f"signed by {self.signer} ({self.key})"
        return f"{self.status}: {self.reason}" if self.reason else self.status


class TagTrust:
    """The policy, and a cache of checked tag objects for one registry."""

    def __init__(self, git: Git, policy: TrustPolicy) -> None:
        self.git = git
        self.policy = policy
        self._checked: dict[tuple[str, str, int], SignatureCheck] = {}
        self._gnupg: dict[int, str] = {}

    def rule_for(self, model: str, stage: str) -> TrustRule | None:
        return self.policy.rule_for(model, stage)

    def check(self, tag: TagRecord, rule: TrustRule) -> SignatureCheck:
        key = (tag.name, tag.object, self.policy.rules.index(rule))
        found = self._checked.get(key)
        if found is None:
            found = self._checked[key] = self._check(tag, rule)
        return found

    def _check(self, tag: TagRecord, rule: TrustRule) -> SignatureCheck:
        if not tag.signed:
            return SignatureCheck(status="unsigned", reason="the tag carries no signature")
        if tag.tag_name != tag.name:
            # A signed tag object copied under another name would otherwise replay it.
            return SignatureCheck(
                status="untrusted",
                reason=f"the signed tag object is named {tag.tag_name!r}, not {tag.name!r}",
            )
        index = self.policy.rules.index(rule)
        output, code = self._verify(tag, rule, index, revoked=True)
        if "[GNUPG:]" in output:
            return _openpgp(output, rule, code)
        found = _ssh(output, code)
        if not found.trusted and rule.revoked_keys:
            # ssh-keygen says only "Could not verify signature." for a revoked key: ask again
            # without the revocation file to tell a revoked signer from a bad signature.
            again = _ssh(*self._verify(tag, rule, index, revoked=False))
            if again.trusted:
                return SignatureCheck(
                    status="untrusted",
                    signer=again.signer,
                    key=again.key,
                    reason=f"the signing key of {again.signer} ({again.key}) is revoked",
                )
        return found

    def _verify(
        self, tag: TagRecord, rule: TrustRule, index: int, *, revoked: bool
    ) -> tuple[str, int]:
        config = ["-c", "gpg.ssh.allowedSignersFile=" + (rule.allowed_signers or os.devnull)]
        if rule.revoked_keys and revoked:
            config += ["-c", f"gpg.ssh.revocationFile={rule.revoked_keys}"]
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GNUPGHOME": self._gnupg_home(index, rule),
            "LC_ALL": "C",
        }
        try:
            done = subprocess.run(
                ["git", "-C", str(self.git.path), *config, "verify-tag", "--raw", tag.object],
                capture_output=True,
                text=True,
                env=env,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot verify: {exc}", 1
        return done.stderr + done.stdout, done.returncode

    def _gnupg_home(self, index: int, rule: TrustRule) -> str:
        """A private gpg home holding only the rule's keys (made once per rule)."""
        home = self._gnupg.get(index)
        if home is None:
            home = self._gnupg[index] = tempfile.mkdtemp(prefix="stageserve-gpg-")
            if rule.gpg_keyring:
                subprocess.run(
                    ["gpg", "--batch", "--quiet", "--import", rule.gpg_keyring],
                    env={**os.environ, "GNUPGHOME": home},
                    capture_output=True,
                    timeout=_TIMEOUT_S,
                    check=False,
                )
        return home

    def close(self) -> None:
        """Remove the private gpg homes (the sync keeps them for its lifetime)."""
        for home in self._gnupg.values():
            shutil.rmtree(home, ignore_errors=True)
        self._gnupg.clear()


def _ssh(output: str, code: int) -> SignatureCheck:
    good = _SSH_GOOD.search(output)
    if code == 0 and good:
        return SignatureCheck(status="trusted", signer=good["who"], key=good["key"])
    key = _SSH_KEY.search(output)
    reason = _first_line(output)
    if "revoked" in output.lower():
        reason = "the signing key is revoked"
    elif key and "No principal matched" in output:
        reason = "the signing key is not an allowed signer"
    found = good or key
    return SignatureCheck(status="untrusted", key=found["key"] if found else None, reason=reason)


def _openpgp(output: str, rule: TrustRule, code: int) -> SignatureCheck:
    status = {line.split()[1]: line.split()[2:] for line in output.splitlines()
              if line.startswith("[GNUPG:] ") and len(line.split()) > 1}  # fmt: skip
    valid = status.get("VALIDSIG")
    good = status.get("GOODSIG")
    allowed = {k.replace(" ", "").upper() for k in rule.gpg_keys}
    if code == 0 and valid and good:
        fingerprints = {valid[0].upper(), valid[-1].upper()}  # signing (sub)key, primary key
        user = " ".join(good[1:])
        if fingerprints & allowed:
            return SignatureCheck(status="trusted", signer=user, key=valid[-1].upper())
        return SignatureCheck(
            status="untrusted", signer=user, key=valid[-1].upper(), reason="key not allowed"
        )
    for word, reason in (
        ("REVKEYSIG", "the signing key is revoked"),
        ("EXPKEYSIG", "the signing key has expired"),
        ("BADSIG", "the signature does not match the tag"),
        ("NO_PUBKEY", "the signing key is not an allowed signer"),
    ):
        if word in status:
            return SignatureCheck(status="untrusted", reason=reason)
    return SignatureCheck(status="untrusted", reason=_first_line(output))


def _first_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[0] if lines else "verification failed"
