"""Real signing keys for trust tests: SSH keys made by ssh-keygen, OpenPGP keys by gpg."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from registry_sync.registry.git import Signing

__all__ = [
    "GpgKey",
    "SshKey",
    "gpg_available",
    "make_gpg_key",
    "make_ssh_key",
    "stop_gpg_agent",
    "write_signers",
]


@dataclass(frozen=True)
class SshKey:
    principal: str
    path: Path  # the private key file; its public key is path + ".pub"

    @property
    def public(self) -> str:
        return Path(f"{self.path}.pub").read_text().strip()

    @property
    def signing(self) -> Signing:
        return Signing(key=str(self.path), format="ssh")


def make_ssh_key(folder: Path, principal: str) -> SshKey:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / principal.split("@", maxsplit=1)[0]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return SshKey(principal, path)


def write_signers(path: Path, *keys: SshKey) -> Path:
    """git's allowed_signers format, restricted to git's signing namespace."""
    path.write_text("".join(f'{k.principal} namespaces="git" {k.public}\n' for k in keys))
    return path


def gpg_available() -> bool:
    return shutil.which("gpg") is not None


@dataclass(frozen=True)
class GpgKey:
    uid: str
    fingerprint: str
    home: Path  # the GNUPGHOME holding its secret key
    public_file: Path

    @property
    def signing(self) -> Signing:
        return Signing(key=self.fingerprint, format="openpgp")


def make_gpg_key(folder: Path, uid: str) -> GpgKey:
    """An ed25519 OpenPGP key without a passphrase, in its own GNUPGHOME under `folder`."""
    home = folder / f"gnupg-{uid.split('@', maxsplit=1)[0]}"
    home.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", uid, "ed25519", "sign", "never"],
        env=env,
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys", uid],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
    )
    public = folder / f"{uid.split('@', maxsplit=1)[0]}.asc"
    exported = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", fingerprint], env=env, check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    public.write_bytes(exported)
    return GpgKey(uid, fingerprint, home, public)


def stop_gpg_agent(key: GpgKey) -> None:
    """Signing started a gpg-agent for the key's home: stop it with the test."""
    subprocess.run(
        ["gpgconf", "--kill", "gpg-agent"],
        env={**os.environ, "GNUPGHOME": str(key.home)},
        capture_output=True,
        check=False,
    )
