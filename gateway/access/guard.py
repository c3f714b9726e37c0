"""`Access`: credentials in, a Principal out; then may it take this action on this stage?

Checked on every predict route (/predict, /v2 infer, MLflow's), on /models, /schema, V2
metadata, shadow reports, and on /metrics when `metrics_auth` is on; probes stay open. A
request without a credential, or with one that does not verify, gets 401 with
`WWW-Authenticate: Bearer`; one whose principal may not take the action gets 403 naming the
action, model and stage, unless the principal may take no action at all on that model: then
it gets the same 404 as a model that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.access.api_keys import ApiKeyStore
from gateway.access.policy import AccessPolicy
from gateway.access.principal import Principal
from gateway.errors import ForbiddenError, SettingsError, UnauthorizedError, UnknownModelError
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.access.jwt_tokens import JwtVerifier

__all__ = ["Access", "build_access"]

log = logging.getLogger("stageserve.access")
_BEARER = b"bearer "


class Access:
    def __init__(
        self,
        policy: AccessPolicy,
        *,
        keys: ApiKeyStore | None = None,
        tokens: JwtVerifier | None = None,
        metrics_auth: bool = False,
        reload_s: float = 2.0,
    ) -> None:
        self.policy = policy
        self.keys = keys
        self.tokens = tokens
        self.metrics_auth = metrics_auth
        self.reload_s = reload_s

    # -- who --------------------------------------------------------------------------------

    def authenticate(self, authorization: bytes | None, api_key: bytes | None) -> Principal:
        """The principal of `Authorization: Bearer <JWT or API key>` or `X-API-Key: <key>`."""
        if api_key is None and authorization is not None:
            if authorization[:7].lower() != _BEARER:
                raise UnauthorizedError("use Authorization: Bearer <token>", "invalid_request")
            credential = authorization[7:].strip()
            # A JWT is three base64url parts; anything else presented as a bearer is a key.
            if credential.count(b".") == 2 and self.tokens is not None:
                return self.tokens.verify(credential.decode("ascii", "replace"))
            api_key = credential
        if api_key is None:
            raise UnauthorizedError("a credential is required", None)
        found = self.keys.lookup(api_key.strip()) if self.keys is not None else None
        if found is None:
            raise UnauthorizedError("unknown API key", "invalid_token")
        return found

    def authenticate_one(self, credential: tuple[bytes, bytes] | None) -> Principal:
        """The principal of the credential header found on a request (name, value)."""
        if credential is None:
            return self.authenticate(None, None)
        name, value = credential
        return (
            self.authenticate(value, None)
            if name == b"authorization"
            else self.authenticate(None, value)
        )

    def authenticate_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        authorization = api_key = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
        return self.authenticate(authorization, api_key)

    # -- may it -----------------------------------------------------------------------------

    def check(
        self,
        principal: Principal,
        action: str,
        model: str,
        stage: str,
        models: Callable[[], dict[str, list[str]]],
    ) -> None:
        """Raise unless `principal` may take `action` on `model` in `stage`; `models()`
        lists what exists (called only to answer a refusal)."""
        if self.policy.allows(principal, action, model, stage):
            return
        if not self.policy.sees(principal, model):
            raise UnknownModelError(
                f"no model {model!r}", {"models": self.visible(principal, models())}
            )
        raise ForbiddenError(principal.name, action, model, stage)

    def check_model(
        self, principal: Principal, action: str, model: str, models: dict[str, list[str]]
    ) -> None:
        """Raise unless `principal` may take `action` on some stage of `model`."""
        if self.policy.allows_some_stage(principal, action, model):
            return
        if not self.policy.sees(principal, model):
            raise UnknownModelError(
                f"no model {model!r}", {"models": self.visible(principal, models)}
            )
        raise ForbiddenError(principal.name, action, model, "*")

    def readable_stages(self, principal: Principal, model: str, stages: Iterable[str]) -> set[str]:
        return {s for s in stages if self.policy.allows(principal, "read", model, s)}

    def check_metrics(self, principal: Principal) -> None:
        if not self.policy.allows(principal, "metrics"):
            raise ForbiddenError(principal.name, "metrics", "*", "*")

    def visible(self, principal: Principal, models: dict[str, list[str]]) -> dict[str, list[str]]:
        """The part of {model: stages} the principal may know about."""
        return {m: stages for m, stages in models.items() if self.policy.sees(principal, m)}

    # -- keeping keys current ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Re-read the key file and the JWKS when they change (off the request path)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.reload_s)
            try:
                if self.keys is not None:
                    self.keys.refresh()
                if self.tokens is not None:
                    await asyncio.to_thread(self.tokens.refresh)
            except Exception:  # never stop reloading
                log.exception("reloading credentials failed")


def build_access(settings: Settings) -> Access | None:
    """The Access of `settings`, or None when auth is off (then nothing is checked)."""
    if not settings.auth:
        return None
    if not settings.api_keys_file and not settings.jwks:
        raise SettingsError("auth", "settings", "needs api_keys_file or jwks (or both)")
    keys = ApiKeyStore(Path(settings.api_keys_file)) if settings.api_keys_file else None
    tokens = None
    if settings.jwks:
        # Imported only when tokens are configured: PyJWT and its crypto backend are ~10 MiB
        # resident that a gateway without JWT auth never needs.
        from gateway.access.jwt_tokens import JwtVerifier

        tokens = JwtVerifier(
            settings.jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
            algorithms=tuple(settings.jwt_algorithms),
            roles_claim=settings.jwt_roles_claim,
            client_claim=settings.jwt_client_claim,
            refresh_s=settings.jwks_refresh_s,
        )
    return Access(
        AccessPolicy(settings.access_policy),
        keys=keys,
        tokens=tokens,
        metrics_auth=settings.metrics_auth,
        reload_s=settings.auth_reload_s,
    )
