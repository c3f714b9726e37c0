"""Real credentials for tests: API key files and JWTs signed with freshly made keys."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.access.api_keys import hash_key

__all__ = ["SigningKey", "write_jwks", "write_keys"]


def write_keys(path: Path, keys: dict[str, tuple[str, list[str]]]) -> Path:
    """{key: (principal, roles)} -> an API key file holding only the keys' sha256."""
    lines = [
        f"- principal: {principal}\n  sha256: {hash_key(key)}\n  roles: {json.dumps(roles)}"
        for key, (principal, roles) in keys.items()
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # atomically, as a Secret update swaps its files
    return path


class SigningKey:
    """A private key of one algorithm (RS256, ES256 or EdDSA) with its public JWK."""

    def __init__(self, algorithm: str, kid: str) -> None:
        self.algorithm = algorithm
        self.kid = kid
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        found: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**found, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": "alice", "iss": "https://idp.test", "aud": "stageserve"}
        body |= {"iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    path.write_text(json.dumps({"keys": [k.jwk() for k in keys]}))
    return path
