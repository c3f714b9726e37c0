"""JWT bearer tokens, verified offline against a JWKS (a file, or a URL fetched in the
background): signature (RS256, ES256, EdDSA), issuer, audience, expiry and not-before with a
small clock skew. PyJWT does the verification (a small, ubiquitous library whose `decode`
checks every registered claim; joserfc would do as well, with more of JOSE than we need).

A verified token is remembered until it expires, so a client that reuses its token pays for
one signature check (~50 µs for RS256) and then a dict lookup per request.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import jwt

from gateway.access.principal import Principal
from gateway.errors import SettingsError, UnauthorizedError

__all__ = ["JwtVerifier"]

log = logging.getLogger("stageserve.access")
_CACHE_MAX = 10_000
_FETCH_TIMEOUT_S = 10.0
_MIN_REFETCH_S = 30.0


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path ("realm_access.roles")."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class JwtVerifier:
    def __init__(
        self,
        jwks: str,
        *,
        issuer: str | None,
        audience: str | None,
        leeway_s: float = 30.0,
        algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA"),
        roles_claim: str = "roles",
        client_claim: str = "azp",
        refresh_s: float = 300.0,
    ) -> None:
        self.source = jwks
        self.is_url = jwks.startswith(("https://", "http://"))
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.algorithms = algorithms
        self.roles_claim = roles_claim
        self.client_claim = client_claim
        self.refresh_s = refresh_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._stamp: Any = None
        self._fetched_at = 0.0
        self._want_refetch = False
        self._cache: dict[str, tuple[Principal, float]] = {}
        self.refresh(force=True)
        if not self._keys:
            raise SettingsError("jwks", jwks, "no usable signing keys")

    # -- keys --------------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the JWKS: a file when it changed, a URL every `refresh_s` (or sooner, at
        most every 30 s, after a token named an unknown key). Errors keep the old keys."""
        try:
            if self.is_url:
                due = time.monotonic() - self._fetched_at
                if (
                    not force
                    and due < self.refresh_s
                    and not (self._want_refetch and due >= _MIN_REFETCH_S)
                ):
                    return False
                self._fetched_at = time.monotonic()
                self._want_refetch = False
                with urllib.request.urlopen(self.source, timeout=_FETCH_TIMEOUT_S) as answer:
                    document = json.loads(answer.read())
            else:
                st = os.stat(self.source)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if not force and stamp == self._stamp:
                    return False
                self._stamp = stamp
                document = json.loads(Path(self.source).read_bytes())
            keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(document).keys}
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            if force and not self._keys:
                raise SettingsError("jwks", self.source, f"cannot load: {exc}") from None
            log.error("keeping the JWKS loaded before: %s", exc)
            return False
        self._keys = keys
        self._cache.clear()
        return True

    # -- tokens ------------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid"))
            if key is None:
                if len(self._keys) == 1 and header.get("kid") is None:
                    key = next(iter(self._keys.values()))
                else:
                    self._want_refetch = True
                    raise UnauthorizedError("the token's signing key is not known", "invalid_token")
            algorithm = key.algorithm_name
            if algorithm not in self.algorithms or header.get("alg") != algorithm:
                raise UnauthorizedError("the token's algorithm is not accepted", "invalid_token")
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("the token has expired", "invalid_token") from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError("the token is not valid yet", "invalid_token") from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError("the token is for another audience", "invalid_token") from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError("the token is from another issuer", "invalid_token") from None
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid token: {exc}", "invalid_token") from None
        principal = self._principal(claims)
        expires = float(claims["exp"]) + self.leeway_s
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        # Not before nbf: an immature token is refused above, so only expiry bounds the entry.
        self._cache[token] = (principal, expires)
        return principal

    def _principal(self, claims: dict[str, Any]) -> Principal:
        roles = _claim(claims, self.roles_claim)
        if isinstance(roles, str):
            roles = roles.split()  # an OAuth "scope" claim
        client = _claim(claims, self.client_claim)
        return Principal(
            name=str(claims["sub"]),
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            client=str(client) if isinstance(client, str) and client else "_jwt",
            via="jwt",
        )
