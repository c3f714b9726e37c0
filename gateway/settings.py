"""The gateway's settings: one frozen object per process, from flags → env → file → defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from registry_sync.errors import SettingsError
from registry_sync.settings_layers import ENV_PREFIX, load_layered
from registry_sync.sync.settings import SYNC_JSON_FIELDS, SyncSettings

__all__ = [
    "ENV_PREFIX",
    "AccessRule",
    "BatchingRule",
    "InferenceLimit",
    "Settings",
    "ShadowExecutor",
    "load_settings",
]

# Where shadow predictions run (gateway/shadow/predict.py).
ShadowExecutor = Literal["process", "thread", "inline"]


class AccessRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One grant of `access_policy`: these actions on models and stages matching the
    patterns (shell-style; empty means all)."""

    actions: list[Literal["predict", "read", "metrics", "feedback"]]
    models: list[str] = []
    stages: list[str] = []


class BatchingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Adaptive batching of one model (`batching`): concurrent requests to the same version
    are answered by one model call (see gateway/pool/batching.py)."""

    max_batch_size: int = 32
    """Most rows in one batched model call; a batch closes as soon as it has this many."""
    max_wait_us: int = 2000
    """Longest a request waits for others to join its batch (µs); a batch also closes as
    soon as no more requests are on their way in (a lone request does not wait)."""


class InferenceLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model's admission limits (`inference_limits`); a field left out takes the default
    (`max_concurrent_inferences`, `inference_timeout_s`). See gateway/pool/admission.py."""

    max_concurrent: int | None = None
    """Requests to this model admitted at once, per process (0: no limit)."""
    timeout_s: float | None = None
    """Seconds from a request's admission to the model's result (0: none)."""


class Settings(SyncSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything `serve` reads from its environment; built once in `main()`. The sync's
    settings (registry, cache_dir, poll_interval_s, ...) are inherited from `SyncSettings`:
    embedded mode runs the same sync in this process."""

    host: str = "127.0.0.1"
    """Address uvicorn binds to."""
    port: int = 8000
    """TCP port uvicorn binds to."""
    journal_path: str | None = None
    """Activation journal (JSON lines: when each version really started/stopped serving)."""
    default_stage: str = "prod"
    """Stage used by `POST /predict/{model}` when the query has no `stage`."""
    default_model: str | None = None
    """Model of MLflow's `POST /invocations` when the query has no `model` (unset: the only
    model served, if there is just one)."""
    max_body_bytes: int = 1_048_576
    """Largest predict request body accepted (413 above it)."""
    max_rows: int = 10_000
    """Most rows accepted in one predict request (413 above it)."""
    allow_non_finite: bool = False
    """Accept null for required double/float inputs (sent to the model as NaN); off: 422."""
    retry_after_s: int = 5
    """`Retry-After` seconds sent with 503 while a stage has no loaded version."""
    retry_failed_load_s: float = 60.0
    """While a version is failed, its load is retried every this many seconds (not sooner)."""
    gc_freeze: bool = True
    """Freeze what lives for the process (imports, the app, loaded versions) out of CPython's
    garbage collector once it is built and after every swap (gateway/pool/heap.py): full
    collections then take milliseconds instead of ~140 ms of a stalled loop (the p99 of
    single-row requests at load). Off: CPython's defaults."""
    inference_threads: int = 4
    """Inference threads for what must not run on the event loop (slow versions, big batches)."""
    workers: int | Literal["auto"] = 1
    """Worker processes serving the port (`auto`: the CPUs this process may use, after its
    affinity mask and cgroup CPU quota); with more than one, a parent process runs the sync
    (embedded mode), the activation journal and the workers (see gateway/workers/)."""
    batching: dict[str, BatchingRule] = msgspec.field(default_factory=dict)
    """Adaptive batching per model, `{model: {max_batch_size, max_wait_us}}` (JSON in the
    environment): concurrent requests to the same version share one model call, each caller
    still gets its own rows, stamp, audit record and metrics."""
    max_concurrent_inferences: int = 0
    """Requests one model may have admitted and not yet answered by the model, per process
    (0: no limit); past it a request gets 503 `model_overloaded` + Retry-After at once
    instead of queueing. Per model: `inference_limits`."""
    inference_timeout_s: float = 0.0
    """Seconds from a request's admission to the model's result (0: none); past it 504
    `inference_timeout`. Per model: `inference_limits`."""
    inference_limits: dict[str, InferenceLimit] = msgspec.field(default_factory=dict)
    """Per model `{model: {max_concurrent, timeout_s}}` (JSON in the environment), over the
    two defaults above."""
    max_header_bytes: int = 65_536
    """Request line + headers larger than this get 431 and the connection is closed."""
    max_headers: int = 100
    """More header fields than this get 431 and the connection is closed."""
    header_timeout_s: float = 10.0
    """A request's headers must arrive within this many seconds of its first byte (or of the
    connection opening): else 408 (a connection that sent nothing is just closed)."""
    body_timeout_s: float = 30.0
    """A request's body must arrive within this many seconds of its headers: else 408."""
    max_connections: int = 1000
    """Client connections served at once; past it a request gets 503 + Retry-After (and the
    connection is closed); far past it (a quarter more) a connection is closed at once."""
    drain_s: float = 5.0
    """On SIGTERM: fail readiness at once, keep serving this long, then stop accepting."""
    shutdown_timeout_s: int = 30
    """After draining: how long in-flight requests may take before they are cut."""
    audit_path: str | None = None
    """JSON-lines audit file (rotated by size); none when unset."""
    audit_stdout: bool = False
    """Also write audit records to stdout."""
    audit_max_bytes: int = 100 * 1_048_576
    """Rotate the audit file when it grows past this size."""
    audit_backups: int = 5
    """Rotated audit files kept (`audit.jsonl.1` ... `.N`)."""
    audit_include_inputs: bool = False
    """Put the decoded inputs themselves in each audit record (off: only their sha256)."""
    audit_include_predictions: bool = True
    """Put what the version answered in each audit record: outcomes sent to /feedback are
    scored against it (off: feedback cannot be scored)."""
    outcomes_path: str | None = None
    """Outcomes posted to /feedback (JSON lines); default `outcomes.jsonl` beside
    `audit_path`."""
    history_index_path: str | None = None
    """SQLite index the gateway queries its history files through (rebuilt from them when
    deleted); default `history.sqlite` beside `audit_path`."""
    postgres_url: str | None = None
    """PostgreSQL history store (`postgresql://user:password@host:5432/db`): audit records,
    journal events and outcomes are spooled locally and shipped there in batches; queries
    (feedback, performance, as-of) read it. Give it from a Secret (`STAGESERVE_POSTGRES_URL`);
    it is never logged (only with the password replaced)."""
    spool_dir: str | None = None
    """Where records wait for PostgreSQL (one folder per stream); default `spool` beside
    `audit_path`, else `<cache_dir>/spool`. Keep it on a volume that outlives the process."""
    spool_max_bytes: int = 1 << 30
    """Records not yet shipped the spool may hold; past it, appends fail like a full disk
    (fail_closed: 503 audit_unavailable; fail_open: records counted as dropped)."""
    spool_fsync: bool = False
    """fsync each spooled batch: records then survive the machine, not just the process
    (costs a disk flush per batch, on the audit writer's thread)."""
    postgres_batch_bytes: int = 4 << 20
    """Most bytes of JSON lines shipped in one COPY."""
    postgres_drain_s: float = 5.0
    """On shutdown: keep shipping what is spooled for up to this long (the rest stays spooled
    for the next start)."""
    replica_id: str | None = None
    """This gateway's name in the shared store (each record's `replica`); default the host
    name (the pod's name on Kubernetes)."""
    asof_max_versions: int = 4
    """Past versions kept loaded for `?as_of=` requests (least recently used go first);
    versions the live pool serves are shared and do not count."""
    asof_max_bytes: int = 1 << 30
    """Estimated memory the as-of pool may hold (each version: the growth of the process's
    resident memory while it loaded, at least its files' size)."""
    asof_timeout_s: float = 60.0
    """Sidecar mode: how long an as-of request waits for the sync to fetch a past version."""
    feedback_max_items: int = 1000
    """Most outcomes in one POST /feedback body (413 above it)."""
    audit_queue_max: int = 100_000
    """Audit records waiting for the writer before requests wait for it; while writes fail,
    also the most records held for the retry."""
    audit_failure_mode: Literal["fail_open", "fail_closed"] = "fail_open"
    """While audit records cannot be written (disk full): `fail_closed` answers predict with
    503 `audit_unavailable` (nothing answered that is not recorded); `fail_open` answers and
    counts what is lost (past `audit_queue_max` records held)."""
    unpickle_allow: list[str] = msgspec.field(default_factory=list)
    """More modules (or single globals) a model file may name when it is loaded, beyond the
    runtimes' own libraries, e.g. `["mycompany.features"]` for a pipeline with your own
    transformer. Anything in them may run while a model loads: list only code you trust.
    In the environment as JSON: `STAGESERVE_UNPICKLE_ALLOW='["mycompany.features"]'`."""
    auth: bool = False
    """Require a credential (API key or JWT) on predict, /models, /schema and V2 metadata
    routes, and check it against `access_policy`; probes stay open."""
    api_keys_file: str | None = None
    """YAML list of `{principal, sha256, roles}`: the sha256 (hex) of each API key, never the
    key. Re-read when it changes (a mounted Secret), without a restart."""
    jwks: str | None = None
    """JWT bearer tokens are verified against this JWKS: a file (re-read when it changes) or
    an http(s) URL (fetched every `jwks_refresh_s`, off the request path)."""
    jwt_issuer: str | None = None
    """Required `iss` of JWTs (unset: not checked)."""
    jwt_audience: str | None = None
    """Required `aud` of JWTs (unset: not checked)."""
    jwt_leeway_s: float = 30.0
    """Clock skew allowed on `exp` and `nbf`."""
    jwt_algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    """Signature algorithms accepted (each key's own algorithm must be one of them)."""
    jwt_roles_claim: str = "roles"
    """Claim (dotted path, e.g. `realm_access.roles`) holding the token's roles: a list, or a
    space-separated string such as `scope`."""
    jwt_client_claim: str = "azp"
    """Claim naming the calling application: the `client` label of
    `stageserve_client_requests_total` for JWT callers."""
    jwks_refresh_s: float = 300.0
    """How often a JWKS URL is fetched again."""
    auth_reload_s: float = 2.0
    """How often the API key file and a JWKS file are checked for changes."""
    access_policy: dict[str, list[AccessRule]] = msgspec.field(default_factory=dict)
    """Role -> the grants it has, e.g. `{"pricing": [{"actions": ["predict"], "models":
    ["cost_*"], "stages": ["prod"]}]}` (JSON in the environment)."""
    metrics_auth: bool = False
    """With `auth`: /metrics also needs a credential whose roles grant `metrics`."""
    unpickle_trust_signed: bool = False
    """Load a version's pickles without the allowlist when the assignment it serves was
    signed by an allowed signer of `trust_policy` (its origin is then trusted); versions in
    unprotected stages still load under the allowlist."""
    shadow: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    """Shadow traffic, `{model: {stage: shadow_stage}}`: requests to `stage` are also predicted
    by the version in `shadow_stage`, after the answer is sent, and the two compared. In the
    environment as JSON: `STAGESERVE_SHADOW='{"cost_predictor": {"prod": "dev"}}'`."""
    shadow_sample: float = 1.0
    """Fraction (0-1) of a shadowed stage's requests that are shadowed, chosen by a hash of
    the request id (the same id is always in or out, on every replica)."""
    shadow_sample_by_model: dict[str, float] = msgspec.field(default_factory=dict)
    """Per-model override of `shadow_sample`, `{model: fraction}` (JSON in the environment)."""
    shadow_queue_max: int = 1000
    """Shadow predictions waiting for the shadow worker; past it they are skipped (counted)."""
    shadow_timeout_s: float = 1.0
    """A shadow prediction taking longer than this counts as a timeout and is not compared."""
    shadow_executor: ShadowExecutor = "thread"
    """Where shadow predictions run: `thread` (one thread of the gateway, at
    `shadow_priority`), `process` (a process of their own, which loads the shadow versions
    itself), `inline` (on the event loop when small and fast, by the primary's rule; else
    the thread). benchmarks/RESULTS.md ("Shadow executors") has the numbers."""
    shadow_priority: Literal["idle", "low", "normal"] = "idle"
    """OS priority of the shadow process or thread: `idle` (Linux SCHED_IDLE: only CPU
    nothing else wants), `low` (nice 19), `normal`."""


# Mappings and lists: an environment variable (or flag) gives them as one JSON value.
_JSON_FIELDS = SYNC_JSON_FIELDS | frozenset(
    {
        "shadow",
        "shadow_sample_by_model",
        "unpickle_allow",
        "access_policy",
        "jwt_algorithms",
        "batching",
        "inference_limits",
    }
)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Resolve each setting from flags (None = not given), then `STAGESERVE_*`, file, default.

    The config file comes from `config_file` or else `STAGESERVE_CONFIG`; unknown keys in it
    (and unknown flags) are errors, so a typo never silently falls back to a default.
    """
    settings = load_layered(Settings, flags, environ, config_file, json_fields=_JSON_FIELDS)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    for key in (
        "max_body_bytes",
        "max_rows",
        "audit_max_bytes",
        "inference_threads",
        "max_header_bytes",
        "max_headers",
        "max_connections",
        "feedback_max_items",
        "asof_max_versions",
        "asof_max_bytes",
        "spool_max_bytes",
        "postgres_batch_bytes",
    ):
        if getattr(settings, key) < 1:
            raise SettingsError(key, "settings", "must be at least 1")
    for key in ("header_timeout_s", "body_timeout_s"):
        if not getattr(settings, key) > 0:
            raise SettingsError(key, "settings", "must be more than 0")
    _check_shadow(settings)
    if settings.postgres_url is not None and not settings.postgres_url.startswith(
        ("postgresql://", "postgres://")
    ):
        # Never echo the value: it holds a password.
        raise SettingsError("postgres_url", "settings", "must be a postgresql:// URL")
    _check_workers(settings)
    if settings.metrics_auth and not settings.auth:
        raise SettingsError("metrics_auth", "settings", "needs auth: true")


def _check_shadow(settings: Settings) -> None:
    if settings.shadow_queue_max < 1:
        raise SettingsError("shadow_queue_max", "settings", "must be at least 1")
    if not settings.shadow_timeout_s > 0:
        raise SettingsError("shadow_timeout_s", "settings", "must be more than 0")
    samples = {"shadow_sample": settings.shadow_sample} | {
        f"shadow_sample_by_model.{m}": f for m, f in settings.shadow_sample_by_model.items()
    }
    for key, fraction in samples.items():
        if not 0.0 <= fraction <= 1.0:
            raise SettingsError(key, "settings", f"{fraction} is not a fraction from 0 to 1")
    for model in settings.shadow_sample_by_model:
        if model not in settings.shadow:
            raise SettingsError(
                f"shadow_sample_by_model.{model}", "settings", "the model has no shadow stage"
            )
    for model, stages in settings.shadow.items():
        for stage, shadow_stage in stages.items():
            if not stage or not shadow_stage:
                raise SettingsError(f"shadow.{model}", "settings", "stage names must be non-empty")
            if stage == shadow_stage:
                raise SettingsError(
                    f"shadow.{model}.{stage}", "settings", "a stage cannot shadow itself"
                )


def _check_workers(settings: Settings) -> None:
    if isinstance(settings.workers, int) and settings.workers < 1:
        raise SettingsError("workers", "settings", "must be at least 1 (or auto)")
    for model, rule in settings.batching.items():
        if rule.max_batch_size < 2:
            raise SettingsError(
                f"batching.{model}.max_batch_size", "settings", "must be at least 2"
            )
        if rule.max_wait_us < 0:
            raise SettingsError(f"batching.{model}.max_wait_us", "settings", "must be at least 0")
    _check_limits(settings)


def _check_limits(settings: Settings) -> None:
    limits = [
        ("max_concurrent_inferences", settings.max_concurrent_inferences),
        ("inference_timeout_s", settings.inference_timeout_s),
    ]
    for model, rule in settings.inference_limits.items():
        limits += [
            (f"inference_limits.{model}.max_concurrent", rule.max_concurrent or 0),
            (f"inference_limits.{model}.timeout_s", rule.timeout_s or 0),
        ]
    for key, value in limits:
        if value < 0:
            raise SettingsError(key, "settings", "must be at least 0 (0: none)")
