"""Who a request is from, once its credential has been verified."""

from __future__ import annotations

import msgspec

__all__ = ["ANONYMOUS", "Principal"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """The API key's principal, or the JWT's subject: what audit records name."""
    roles: tuple[str, ...]
    """The roles the access policy grants actions to."""
    client: str
    """The `stageserve_client_requests_total{client}` label: a key's principal, a JWT's
    client id claim (bounded: see metrics)."""
    via: str
    """"api_key", "jwt" or "none" (auth off)."""


ANONYMOUS = Principal(name="anonymous", roles=(), client="anonymous", via="none")
