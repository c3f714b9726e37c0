"""Fetch a package file that lives outside the registry: https://, s3://, file://.

Each file is streamed to `<name>.part` beside its place, its size and sha256 checked, and only
then renamed into place, so a reader never sees a partial or wrong file. Transient failures
(network, 5xx, throttling) are retried a bounded number of times with backoff; a digest or size
mismatch is not (the store holds other bytes than the manifest names). Progress goes to the
terminal when there is one, else to quiet log lines (start, every 10 s, end).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from registry_sync.errors import FetchError

__all__ = ["RETRIES", "FetchedFile", "fetch_uri", "redact_uri"]

log = logging.getLogger(__name__)

RETRIES = 3
_CHUNK_BYTES = 1 << 20
_LOG_EVERY_S = 10.0
_BACKOFF_S = (0.5, 2.0)


class _TransientError(Exception):
    """A failure worth another attempt."""


@dataclass(frozen=True)
class FetchedFile:
    path: Path
    size_bytes: int
    attempts: int


def redact_uri(uri: str) -> str:
    """The URI without user info or query (a presigned URL's signature is a credential)."""
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else uri


def fetch_uri(
    uri: str,
    dest: Path,
    *,
    sha256: str,
    size_bytes: int,
    retries: int = RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchedFile:
    """Put the bytes at `uri` at `dest` after checking them; raise FetchError otherwise."""
    shown = redact_uri(uri)
    scheme = urlsplit(uri).scheme
    if scheme not in ("https", "http", "s3", "file"):
        raise FetchError(str(dest.parent), shown, f"scheme {scheme!r} (https, s3, file)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(1, retries + 1):
        try:
            with open(part, "wb") as out:
                digest = _copy(uri, out, shown, size_bytes)
            actual = part.stat().st_size
            if actual != size_bytes:
                raise FetchError(
                    str(dest.parent), shown, f"{actual} bytes, model.yaml records {size_bytes}"
                )
            if digest != sha256:
                raise FetchError(
                    str(dest.parent), shown, f"sha256 {digest}, model.yaml records {sha256}"
                )
            part.replace(dest)
            return FetchedFile(path=dest, size_bytes=actual, attempts=attempt)
        except _TransientError as exc:
            last = str(exc)
            log.warning("fetch %s failed (attempt %d of %d): %s", shown, attempt, retries, last)
            if attempt < retries:
                sleep(_BACKOFF_S[0] * _BACKOFF_S[1] ** (attempt - 1))
        finally:
            part.unlink(missing_ok=True)
    raise FetchError(str(dest.parent), shown, f"gave up after {retries} attempts: {last}")


def _copy(uri: str, out: IO[bytes], shown: str, expected: int) -> str:
    digest = hashlib.sha256()
    progress = _Progress(shown, expected)
    for chunk in _chunks(uri, expected):
        out.write(chunk)
        digest.update(chunk)
        progress.add(len(chunk))
        if progress.done > expected:
            break  # more than the manifest says: no point reading the rest
    progress.finish()
    return digest.hexdigest()


def _chunks(uri: str, expected: int) -> Iterator[bytes]:
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        yield from _file_chunks(uri)
    elif scheme == "s3":
        yield from _s3_chunks(uri)
    else:
        yield from _http_chunks(uri)


def _file_chunks(uri: str) -> Iterator[bytes]:
    path = Path(unquote(urlsplit(uri).path))
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                yield chunk
    except FileNotFoundError:
        raise FetchError(str(path.parent), uri, "no such file") from None
    except OSError as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from None


def _http_chunks(uri: str) -> Iterator[bytes]:
    import httpx

    try:
        with (
            httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True) as c,
            c.stream("GET", uri) as response,
        ):
            if response.status_code >= 500 or response.status_code == 429:
                raise _TransientError(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise FetchError("", redact_uri(uri), f"HTTP {response.status_code}")
            yield from response.iter_bytes(_CHUNK_BYTES)
    except httpx.HTTPError as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from None


def _s3_chunks(uri: str) -> Iterator[bytes]:
    """s3://bucket/key with boto3's usual credentials chain (AWS_* environment, shared config
    and credentials files, instance or pod roles; AWS_ENDPOINT_URL for S3-compatible stores)."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError:
        raise FetchError("", uri, "s3:// needs boto3 (pip install 'stageserve[s3]')") from None
    parts = urlsplit(uri)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    try:
        body: Any = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(_CHUNK_BYTES)
        finally:
            body.close()
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            raise _TransientError(f"S3 {code or status}") from None
        raise FetchError("", uri, f"S3 {code or status}: {exc}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _TransientError(f"{type(exc).__name__}: {exc}") from None


class _Progress:
    """A terminal progress line, or a log line every 10 s (and at start and end)."""

    def __init__(self, shown: str, total: int) -> None:
        self.shown = shown
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.last_report = self.started
        self.tty = sys.stderr.isatty()
        if not self.tty:
            log.info("fetching %s (%d bytes)", shown, total)

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self.last_report >= 0.2:
            self.last_report = now
            percent = 100 * self.done / self.total if self.total else 100
            sys.stderr.write(f"\rfetching {self.shown}: {percent:5.1f}%")
            sys.stderr.flush()
        elif not self.tty and now - self.last_report >= _LOG_EVERY_S:
            self.last_report = now
            log.info("fetching %s: %d of %d bytes", self.shown, self.done, self.total)

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            sys.stderr.write(f"\rfetched {self.shown}: {self.done} bytes in {elapsed:.1f}s\n")
            sys.stderr.flush()
        else:
            log.info("fetched %s: %d bytes in %.1f s", self.shown, self.done, elapsed)
