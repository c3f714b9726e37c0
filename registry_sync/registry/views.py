"""What registry queries return: msgspec Structs, so `--json` is `msgspec.json.encode(result)`."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from registry_sync.package.manifest import ModelCard, Signature

__all__ = [
    "HistoryEvent",
    "ModelDetail",
    "ModelSummary",
    "RefusedAssignment",
    "ResolvedStage",
    "StageAssignment",
    "StageResolution",
    "TagSignature",
    "TagWritten",
    "VersionInfo",
    "iso_time",
    "parse_time",
    "parse_time_s",
]


class ModelSummary(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    latest: str | None
    # stage -> the version serving it, for every stage the model has ever used.
    stages: dict[str, str]
    description: str = ""
    labels: list[str] = []
    deprecated: bool = False


class ResolvedStage(msgspec.Struct, frozen=True):
    """What a stage resolves to, as the sync loop reads it: the version and its commit."""

    model: str
    stage: str
    version: str
    commit: str
    # Under a trust policy, for a protected stage: who signed the assignment that counts.
    signed_by: str | None = None


class RefusedAssignment(msgspec.Struct, frozen=True, kw_only=True):
    """A tag not followed because its signature is not trusted: a stage tag of a protected
    stage, or a deregistration/deprecation that would have emptied one (`stage`)."""

    model: str
    stage: str
    tag: str
    version: str | None
    time: str
    status: str  # unsigned, untrusted
    reason: str
    # The tag's event: assignment, unassignment, deregistration, deprecation.
    event: str = "assignment"
    # The version the stage serves instead (None: nothing trusted), and who signed that.
    serving: str | None = None
    serving_signed_by: str | None = None

    def describe(self) -> str:
        instead = (
            f"; {self.serving} keeps serving ({self.serving_signed_by})"
            if self.serving
            else "; no trusted assignment"
        )
        what = f"{self.tag} ({self.version})" if self.version else self.tag
        if self.event in ("deregistration", "deprecation"):
            what = f"{self.event} {what}"
        return f"{what} not followed: {self.status}: {self.reason}{instead}"


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    commit: str
    registered_at: str | None
    # False once deregistered (gto's is_active).
    active: bool
    # The stages this version serves now.
    stages: list[str] = []
    author: str = ""


class ModelDetail(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    path: str
    deprecated: bool
    latest: str | None
    stages: dict[str, str]
    versions: list[VersionInfo]
    description: str = ""
    labels: list[str] = []
    # From the latest version's model.yaml (None when it has none, e.g. a gto-only artifact).
    format: str | None = None
    card: ModelCard | None = None
    signature: Signature | None = None
    # Per stage, the assignment it follows (tagger, signature); under a trust policy, also
    # the tags of this model the policy refused.
    assignments: list[StageAssignment] = []
    untrusted: list[RefusedAssignment] = []


class StageResolution(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    stage: str
    version: str
    commit: str
    # When this version was (last) assigned to the stage.
    assigned_at: str
    # The time the question was asked about (None: now).
    at: str | None = None
    # With a trust policy (`which --trusted`) in a protected stage: who signed the assignment.
    signed_by: str | None = None


class HistoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    time: str
    event: str  # registration, deregistration, assignment, unassignment, deprecation
    model: str
    commit: str
    tag: str
    version: str | None = None
    stage: str | None = None
    author: str = ""
    author_email: str = ""
    message: str = ""
    # Whether the tag carries a signature, and, under a trust policy, what it proves.
    signed: bool = False
    signature: TagSignature | None = None


class TagSignature(msgspec.Struct, frozen=True, kw_only=True):
    """A tag's signature checked under the trust policy (only where the policy applies: a
    stage tag of a protected stage, or a withdrawal of what serves one)."""

    status: str  # trusted, untrusted, unsigned
    signed_by: str | None = None
    """Who signed: the allowed_signers principal or OpenPGP user id, and the key."""
    reason: str = ""

    def describe(self) -> str:
        if self.status == "trusted":
            return f"verified: {self.signed_by}"
        who = f" by {self.signed_by}" if self.signed_by else ""
        return f"{self.status}{who}: {self.reason}" if self.reason else f"{self.status}{who}"


class StageAssignment(msgspec.Struct, frozen=True, kw_only=True):
    """The assignment a stage follows now: which tag, who tagged it and who signed it."""

    stage: str
    version: str
    tag: str
    assigned_at: str
    author: str = ""
    author_email: str = ""
    signed: bool = False
    signature: TagSignature | None = None


def iso_time(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """ISO 8601 (date, or date and time, with or without a zone; naive means UTC) -> unix s."""
    return int(parse_time_s(text))


def parse_time_s(text: str) -> float:
    """parse_time keeping the fraction of a second (an MLflow history is stamped in ms)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"time {text!r} is not ISO 8601 (e.g. 2024-10-01 or 2024-10-01T12:00:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class TagWritten(msgspec.Struct, frozen=True, kw_only=True):
    """A tag a registry write created (and pushed, for a remote registry)."""

    model: str
    tag: str
    event: str
    commit: str
    time: str
    version: str | None = None
    stage: str | None = None
