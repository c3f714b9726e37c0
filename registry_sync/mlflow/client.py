"""A small MLflow REST client on httpx: registry reads and proxied artifact downloads.

Everything it raises is a RegistryError: the server or network failing is
RegistryUnreachableError (the sync keeps what serves and retries), a version's artifacts
missing or malformed is a PackageError for that version only. No message carries the
Authorization header; URLs never hold credentials (they travel in the header).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import msgspec

from registry_sync.errors import PackageError, RegistryUnreachableError
from registry_sync.mlflow.location import MlflowLocation
from registry_sync.mlflow.rest import (
    ArtifactFile,
    ArtifactList,
    DownloadUri,
    ModelVersion,
    ModelVersionPage,
    RegisteredModel,
    RegisteredModelPage,
)

__all__ = ["MlflowClient", "artifact_path"]

T = TypeVar("T")

_API = "/api/2.0/mlflow"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_PAGE_SIZE = 1000
_CHUNK_BYTES = 1 << 20


def artifact_path(artifact_uri: str) -> str:
    """The path under the server's artifact proxy of an `mlflow-artifacts:` URI.

    Other schemes (s3://, a local path) mean the server does not proxy artifacts, and the
    sync would need the store's credentials itself: refused with a message that says so.
    """
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        raise PackageError(
            artifact_uri,
            "artifacts are not served by the tracking server (scheme "
            f"{parts.scheme or 'none'!r}); run `mlflow server` with artifact serving on "
            "(the default, --serve-artifacts) so the sync downloads through its API",
        )
    return parts.path.strip("/")


class MlflowClient:
    def __init__(self, location: MlflowLocation, *, timeout_s: float = 30.0) -> None:
        self.location = location
        self._headers = {"User-Agent": "stageserve-sync"}
        if location.authorization:
            self._headers["Authorization"] = location.authorization
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))

    def _http(self) -> httpx.Client:
        """A client per call: nothing stays open between polls (a poll is a few requests
        every few seconds; a kept-alive pool would only outlive the sync that made it)."""
        return httpx.Client(
            base_url=self.location.base_url,
            headers=self._headers,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
        )

    # -- the registry ---------------------------------------------------------------------

    def registered_models(self) -> list[RegisteredModel]:
        found: list[RegisteredModel] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"max_results": _PAGE_SIZE}
            if token:
                params["page_token"] = token
            page = self._get(f"{_API}/registered-models/search", params, RegisteredModelPage)
            found.extend(page.registered_models)
            token = page.next_page_token
            if not token:
                return found

    def model_versions(self, name: str) -> list[ModelVersion]:
        found: list[ModelVersion] = []
        token: str | None = None
        escaped = name.replace("'", "\\'")
        while True:
            params: dict[str, Any] = {"filter": f"name='{escaped}'", "max_results": _PAGE_SIZE}
            if token:
                params["page_token"] = token
            page = self._get(f"{_API}/model-versions/search", params, ModelVersionPage)
            found.extend(page.model_versions)
            token = page.next_page_token
            if not token:
                return found

    def download_uri(self, name: str, version: str) -> str:
        """Where a version's MLmodel directory is (resolves MLflow 3's `models:/m-<id>`)."""
        params = {"name": name, "version": version}
        found = self._get(f"{_API}/model-versions/get-download-uri", params, DownloadUri)
        return found.artifact_uri

    # -- artifacts ------------------------------------------------------------------------

    def list_artifacts(self, path: str) -> list[ArtifactFile]:
        listed = self._get(_ARTIFACTS, {"path": path}, ArtifactList)
        return listed.files

    def download(self, path: str, dest: Path, *, expected_size: int | None = None) -> int:
        """Stream one artifact file to `dest` (via a temporary file beside it); its size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
        tmp = Path(tmp_name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self._stream(f"{_ARTIFACTS}/{quote(path)}", path):
                    out.write(chunk)
                    size += len(chunk)
            if expected_size is not None and size != expected_size:
                raise PackageError(
                    path, f"downloaded {size} bytes, the server listed {expected_size}"
                )
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    # -- plumbing -------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any], kind: type[T]) -> T:
        try:
            with self._http() as http:
                response = http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check(response, url)
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.DecodeError as exc:
            raise RegistryUnreachableError(
                self.location.display, f"{url}: unexpected answer: {exc}"
            ) from None

    def _stream(self, url: str, path: str) -> Iterator[bytes]:
        try:
            with self._http() as http, http.stream("GET", url) as response:
                if response.status_code == 404:
                    raise PackageError(path, "artifact file is missing on the tracking server")
                if response.status_code != 200:
                    response.read()
                self._check(response, url)
                yield from response.iter_bytes(_CHUNK_BYTES)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _check(self, response: httpx.Response, url: str) -> None:
        if response.status_code == 200:
            return
        reason = f"{url}: HTTP {response.status_code}"
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            reason += f" {body.get('error_code', '')}: {str(body['message'])[:300]}"
        if response.status_code == 404:
            # A version or artifact deleted on the server: that version's problem only.
            raise PackageError(url, reason.removeprefix(f"{url}: "))
        if response.status_code in (401, 403):
            reason += " (credentials: MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD)"
        raise RegistryUnreachableError(self.location.display, reason)

    def _unreachable(self, exc: httpx.HTTPError) -> RegistryUnreachableError:
        return RegistryUnreachableError(self.location.display, f"{type(exc).__name__}: {exc}")
