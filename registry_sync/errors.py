"""The errors registry_sync raises, grouped by what the caller can do about them.

RegistryError
├── NotARegistryError          the path or URL is not a git repository we can use
├── RegistryUnreachableError   a remote could not be fetched (network, auth, moved away)
├── ModelNotFoundError         no such model in the registry
├── VersionNotFoundError       no such version of a model
├── VersionExistsError         registering a version that is already registered
├── StageNotAllowedError       a stage that `.gto` does not list
├── NoVersionInStageError      the stage resolves to no version
├── IncompatibleSignatureError assign would break the stage's clients
├── InvalidTagError            a tag (or name, version) that looks like ours but does not parse
├── TagTimeError               a write cannot be dated truthfully after the events it follows
├── UnservableNameError        a model name gto allows but HTTP routes cannot carry ('/')
├── GitCommandError            a git command failed in a way none of the others describes
├── SettingsError              a setting could not be read or cast (names the key and source)
├── LinkError                  a linked package's source rev is not a tag, or moved
├── CacheError                 the cache could not be written or read (full disk, permissions)
├── HistoryStoreError          the history store (files, PostgreSQL) cannot be read or written
├── HistoryQueryError          a history question has no answer (no journal, before the start)
└── PackageError               a model package is invalid
    ├── ManifestError          model.yaml does not parse or has wrong/unknown fields
    ├── MissingFileError       a file the manifest lists is absent
    ├── DigestMismatchError    a file's sha256 differs from the manifest
    │   └── SizeMismatchError  a file's size differs from the manifest (checked before hashing)
    ├── UnsafePackageError     a file (a symlink, a device) would land outside the package
    ├── UnsupportedFormatError no runtime for the package's format
    ├── UnsafeArtifactError    an artifact would run code or reach outside the package to load
    ├── UnsupportedFlavorError an MLflow version has no flavor stageserve serves
    ├── ArtifactChangedError   a version's files differ from those pinned at first download
    ├── FetchError             a file outside the registry could not be fetched (URI, link)
    └── OnnxParityError        an ONNX export disagrees with its source model on the example
InvalidInputError              prediction input that does not fit the signature (names the column)

Every error carries its data as attributes and a message that names the problem;
the CLI prints the message as one line and exits 1, the gateway maps them to HTTP.
"""

from __future__ import annotations

__all__ = [
    "ArtifactChangedError",
    "CacheError",
    "DigestMismatchError",
    "FetchError",
    "GitCommandError",
    "HistoryQueryError",
    "HistoryStoreError",
    "IncompatibleSignatureError",
    "InvalidInputError",
    "InvalidTagError",
    "LinkError",
    "ManifestError",
    "MissingFileError",
    "ModelNotFoundError",
    "NoVersionInStageError",
    "NotARegistryError",
    "OnnxParityError",
    "PackageError",
    "RegistryError",
    "RegistryUnreachableError",
    "SettingsError",
    "SizeMismatchError",
    "StageNotAllowedError",
    "TagTimeError",
    "UnsafeArtifactError",
    "UnsafePackageError",
    "UnservableNameError",
    "UnsupportedFlavorError",
    "UnsupportedFormatError",
    "VersionExistsError",
    "VersionNotFoundError",
]


class RegistryError(Exception):
    """Base of every error registry_sync raises on purpose."""


class NotARegistryError(RegistryError):
    def __init__(self, location: str, reason: str = "not a git repository") -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class RegistryUnreachableError(RegistryError):
    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"registry {location} is unreachable: {reason}")


class ModelNotFoundError(RegistryError):
    def __init__(self, model: str, known: list[str] | None = None) -> None:
        self.model = model
        self.known = sorted(known or [])
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"model {model!r} is not in the registry{hint}")


class VersionNotFoundError(RegistryError):
    def __init__(self, model: str, version: str, known: list[str] | None = None) -> None:
        self.model = model
        self.version = version
        self.known = list(known or [])
        hint = f" (registered: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"model {model!r} has no version {version}{hint}")


class VersionExistsError(RegistryError):
    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        super().__init__(f"model {model!r} already has version {version}")


class StageNotAllowedError(RegistryError):
    def __init__(self, stage: str, allowed: list[str]) -> None:
        self.stage = stage
        self.allowed = list(allowed)
        super().__init__(f"stage {stage!r} is not allowed by .gto (allowed: {', '.join(allowed)})")


class NoVersionInStageError(RegistryError):
    def __init__(self, model: str, stage: str, at: str | None = None) -> None:
        self.model = model
        self.stage = stage
        self.at = at
        when = f" at {at}" if at else ""
        super().__init__(f"model {model!r} has no version in stage {stage!r}{when}")


class IncompatibleSignatureError(RegistryError):
    def __init__(self, model: str, stage: str, version: str, problems: list[str]) -> None:
        self.model = model
        self.stage = stage
        self.version = version
        self.problems = list(problems)
        super().__init__(
            f"assigning {model} {version} to {stage!r} would break its clients: "
            + "; ".join(problems)
            + " (use --force to assign anyway)"
        )


class TagTimeError(RegistryError):
    """The clock is not past the newest event the write must follow (a fixed
    GIT_COMMITTER_DATE, or an event dated in the future): dating the tag later would lie."""

    def __init__(self, model: str, newest: str, now: str, reason: str) -> None:
        self.model = model
        self.newest = newest
        self.now = now
        super().__init__(
            f"cannot date a tag of {model!r} after its newest event ({newest}) at the current "
            f"time {now}: {reason}"
        )


class InvalidTagError(RegistryError):
    def __init__(self, tag: str, reason: str) -> None:
        self.tag = tag
        self.reason = reason
        super().__init__(f"tag {tag!r}: {reason}")


class UnservableNameError(RegistryError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"model name {name!r} contains '/': gto allows it, but stageserve serves each model "
            "at one URL path segment (/predict/{model}, /v2/models/{model}/..., "
            "/models/{model}), so it cannot serve it; use '_' or '-' instead"
        )


class PackageError(RegistryError):
    """A model package that cannot be used; `path` is the package folder."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class ManifestError(PackageError):
    pass


class MissingFileError(PackageError):
    def __init__(self, path: str, file: str) -> None:
        self.file = file
        super().__init__(path, f"file {file!r} listed in model.yaml is missing")


class DigestMismatchError(PackageError):
    def __init__(self, path: str, file: str, expected: str, actual: str) -> None:
        self.file = file
        self.expected = expected
        self.actual = actual
        super().__init__(path, f"sha256 of {file!r} is {actual}, but model.yaml records {expected}")


class UnsafePackageError(PackageError):
    """A package whose files would not stay inside its folder when written out (a symlink to
    an absolute path or out of the package, a device file): refused, never extracted."""

    def __init__(self, path: str, reason: str) -> None:
        self.reason = reason
        super().__init__(path, f"unsafe package, refused: {reason}")


class UnsupportedFormatError(PackageError):
    def __init__(self, path: str, fmt: str) -> None:
        self.format = fmt
        super().__init__(path, f"no runtime for format {fmt!r} (onnx, sklearn, statsmodels)")


class UnsafeArtifactError(PackageError):
    """An artifact refused before anything in it ran: `subject` names what was refused (a
    global such as 'builtins.eval', a formula, an ONNX external-data path)."""

    def __init__(self, path: str, file: str, subject: str, reason: str) -> None:
        self.file = file
        self.subject = subject
        self.reason = reason
        super().__init__(path, f"{file}: refused {subject}: {reason}")


class OnnxParityError(PackageError):
    def __init__(self, path: str, max_abs_diff: float, tolerance: float) -> None:
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        super().__init__(
            path,
            f"ONNX export differs from the model on the input example by {max_abs_diff:.3g} "
            f"(tolerance {tolerance:.3g})",
        )


class InvalidInputError(RegistryError):
    """Prediction input that does not fit the model's signature; `column` names the input."""

    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason
        super().__init__(f"input {column!r}: {reason}")


class SizeMismatchError(DigestMismatchError):
    """A file whose size differs from the manifest: caught before hashing it."""

    def __init__(self, path: str, file: str, expected_bytes: int, actual_bytes: int) -> None:
        self.expected_bytes = expected_bytes
        self.actual_bytes = actual_bytes
        PackageError.__init__(
            self,
            path,
            f"size of {file!r} is {actual_bytes} bytes, but model.yaml records {expected_bytes}",
        )
        self.file = file
        self.expected = f"{expected_bytes} bytes"
        self.actual = f"{actual_bytes} bytes"


class GitCommandError(RegistryError):
    """A git command failed for a reason none of the errors above describes."""

    def __init__(self, location: str, command: str, reason: str) -> None:
        self.location = location
        self.command = command
        self.reason = reason
        super().__init__(f"{location}: git {command} failed: {reason}")


class SettingsError(RegistryError):
    """Raised by the settings loader both `serve` and `sync` use (settings_layers.py)."""

    def __init__(self, key: str, source: str, reason: str) -> None:
        self.key = key
        self.source = source
        self.reason = reason
        super().__init__(f"setting {key!r} from {source}: {reason}")


class UnsupportedFlavorError(PackageError):
    """An MLflow model version none of whose flavors stageserve can serve."""

    def __init__(self, path: str, flavors: list[str], served: str) -> None:
        self.flavors = list(flavors)
        super().__init__(
            path,
            f"MLmodel flavors {', '.join(flavors) or 'none'}: none that stageserve serves "
            f"({served})",
        )


class ArtifactChangedError(PackageError):
    """A version's files no longer match the digests recorded when it was first fetched."""

    def __init__(self, path: str, file: str, pinned: str, actual: str) -> None:
        self.file = file
        self.pinned = pinned
        self.actual = actual
        super().__init__(
            path,
            f"{file!r} changed since it was first downloaded (sha256 {pinned[:16]}… then, "
            f"{actual[:16]}… now): refused; register a new version instead",
        )


class FetchError(PackageError):
    """A file the manifest places outside the registry (a `uri`, a linked repository) could
    not be fetched or did not match its digest; `uri` is safe to log."""

    def __init__(self, path: str, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(path, f"cannot fetch {uri}: {reason}")


class LinkError(RegistryError):
    """A linked package whose source cannot be used: a rev that is not a tag, or a tag that
    no longer points at the recorded commit."""

    def __init__(self, source: str, rev: str, reason: str) -> None:
        self.source = source
        self.rev = rev
        self.reason = reason
        super().__init__(f"{source} {rev}: {reason}")


class CacheError(RegistryError):
    """The cache could not be written or read (a full disk, a read-only folder)."""

    def __init__(self, cache_dir: str, reason: str) -> None:
        self.cache_dir = cache_dir
        self.reason = reason
        super().__init__(f"cache {cache_dir}: {reason}")


class HistoryStoreError(RegistryError):
    """The history store could not be read or written (a file, the index, PostgreSQL)."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"history store {location}: {reason}")


class HistoryQueryError(RegistryError):
    """A question about the past the history cannot answer: no journal, an instant before the
    stage's first activation, a version that cannot be found or verified any more.
    `earliest` names the first instant there is an answer for, when one exists."""

    def __init__(self, message: str, *, reason: str, earliest: str | None = None) -> None:
        self.reason = reason
        self.earliest = earliest
        super().__init__(message)
