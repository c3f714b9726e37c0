"""Where an MLflow tracking server is and how to authenticate to it (never logged)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from registry_sync.errors import NotARegistryError

__all__ = ["MLFLOW_SCHEMES", "MlflowLocation", "is_mlflow_uri"]

MLFLOW_SCHEMES = ("mlflow+http://", "mlflow+https://")


def is_mlflow_uri(location: str) -> bool:
    return location.startswith(MLFLOW_SCHEMES)


@dataclass(frozen=True)
class MlflowLocation:
    """`mlflow+https://[user:password@]host[:port][/prefix]` split into the server's base URL
    and the Authorization header.

    Credentials come the way MLflow's own clients take them: `MLFLOW_TRACKING_TOKEN` (a bearer
    token), else `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (basic auth), else a
    user and password in the URL. The header is kept out of `repr` and of `display`.
    """

    base_url: str
    display: str
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, uri: str, environ: Mapping[str, str]) -> MlflowLocation:
        if not is_mlflow_uri(uri):
            raise NotARegistryError(uri, "an MLflow registry URI starts with mlflow+http(s)://")
        parts = urlsplit(uri.removeprefix("mlflow+"))
        if not parts.hostname:
            raise NotARegistryError(_redacted(uri), "no host in the MLflow registry URI")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        base_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        authorization = None
        token = environ.get("MLFLOW_TRACKING_TOKEN")
        user = environ.get("MLFLOW_TRACKING_USERNAME") or unquote(parts.username or "")
        password = environ.get("MLFLOW_TRACKING_PASSWORD") or unquote(parts.password or "")
        if token:
            authorization = f"Bearer {token}"
        elif user or password:
            pair = f"{user}:{password}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        return cls(base_url=base_url, display="mlflow+" + base_url, authorization=authorization)

    @property
    def slug(self) -> str:
        """A folder name for this server's state (history, pins): host, port and path."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.base_url.split("://", 1)[1]).strip("-")


def _redacted(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
