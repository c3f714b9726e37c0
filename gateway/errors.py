"""The errors the gateway raises on purpose; `gateway/http_errors.py` maps them to HTTP."""

from __future__ import annotations

__all__ = ["GatewayError"]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""
