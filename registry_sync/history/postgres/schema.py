"""The tables history lives in, and how one batch of spooled JSON lines gets into them.

A batch is copied as raw JSON text into a temporary staging table (`COPY ... FROM STDIN`,
one round trip, no per-record work in the gateway: PostgreSQL parses the JSON), then inserted
with `ON CONFLICT DO NOTHING` on each stream's key, so shipping a batch twice changes nothing.
Every replica creates what is missing on its first connection, under an advisory lock.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INSERTS", "SCHEMA_VERSION", "STAGING", "ensure_schema"]

SCHEMA_VERSION = 1
_LOCK_KEY = 0x5354_4753  # "STGS": the advisory lock migrations take

_DDL = """
CREATE TABLE IF NOT EXISTS stageserve_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS stageserve_audit (
    request_id text PRIMARY KEY,
    time timestamptz NOT NULL,
    model text NOT NULL,
    stage text NOT NULL,
    version text,
    digest text,
    status integer NOT NULL,
    latency_ms double precision,
    rows integer,
    input_sha256 text,
    inputs jsonb,
    predictions jsonb,
    principal text,
    client_request_id text,
    shadow boolean NOT NULL DEFAULT false,
    primary_request_id text,
    shadow_error text,
    as_of text,
    basis text,
    replica text NOT NULL
);
CREATE INDEX IF NOT EXISTS stageserve_audit_model_time ON stageserve_audit (model, time);
CREATE INDEX IF NOT EXISTS stageserve_audit_time ON stageserve_audit (time);
CREATE INDEX IF NOT EXISTS stageserve_audit_client ON stageserve_audit (model, client_request_id)
    WHERE client_request_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS stageserve_journal (
    replica text NOT NULL,
    at timestamptz NOT NULL,
    model text NOT NULL,
    stage text NOT NULL,
    version text NOT NULL,
    digest text NOT NULL,
    kind text NOT NULL,
    message text NOT NULL DEFAULT '',
    PRIMARY KEY (replica, at, model, stage, kind, version)
);
CREATE TABLE IF NOT EXISTS stageserve_outcomes (
    request_id text PRIMARY KEY,
    received_at timestamptz NOT NULL,
    model text NOT NULL,
    stage text NOT NULL,
    version text NOT NULL,
    digest text,
    predicted_at timestamptz NOT NULL,
    outcome jsonb NOT NULL,
    principal text,
    client_request_id text,
    regression_values integer NOT NULL,
    abs_error double precision NOT NULL,
    squared_error double precision NOT NULL,
    labels integer NOT NULL,
    correct integer NOT NULL,
    log_loss_values integer NOT NULL,
    log_loss double precision NOT NULL,
    replica text NOT NULL
);
CREATE INDEX IF NOT EXISTS stageserve_outcomes_model_time
    ON stageserve_outcomes (model, predicted_at);
CREATE TABLE IF NOT EXISTS stageserve_rejected (
    stream text NOT NULL,
    replica text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    line bytea NOT NULL,
    error text NOT NULL
);
"""

STAGING = "CREATE TEMP TABLE IF NOT EXISTS stageserve_staging (doc text) ON COMMIT DELETE ROWS"

# Per stream: staging -> table, the replica as the one parameter.
INSERTS: dict[str, str] = {
    "audit": """
INSERT INTO stageserve_audit
SELECT d->>'request_id', (d->>'time')::timestamptz, d->>'model', d->>'stage', d->>'version',
       d->>'digest', (d->>'status')::integer, (d->>'latency_ms')::double precision,
       (d->>'rows')::integer, d->>'input_sha256', d->'inputs', d->'predictions',
       d->>'principal', d->>'client_request_id', coalesce((d->>'shadow')::boolean, false),
       d->>'primary_request_id', d->>'shadow_error', d->>'as_of', d->>'basis', %(replica)s
FROM (SELECT doc::jsonb AS d FROM stageserve_staging) AS s
ON CONFLICT (request_id) DO NOTHING
""",
    "journal": """
INSERT INTO stageserve_journal
SELECT %(replica)s, (d->>'at')::timestamptz, d->>'model', d->>'stage', d->>'version',
       d->>'digest', d->>'kind', coalesce(d->>'message', '')
FROM (SELECT doc::jsonb AS d FROM stageserve_staging) AS s
ON CONFLICT DO NOTHING
""",
    "outcomes": """
INSERT INTO stageserve_outcomes
SELECT d->>'request_id', (d->>'received_at')::timestamptz, d->>'model', d->>'stage',
       d->>'version', d->>'digest', (d->>'predicted_at')::timestamptz, d->'outcome',
       d->>'principal', d->>'client_request_id', (d->>'regression_values')::integer,
       (d->>'abs_error')::double precision, (d->>'squared_error')::double precision,
       (d->>'labels')::integer, (d->>'correct')::integer, (d->>'log_loss_values')::integer,
       (d->>'log_loss')::double precision, %(replica)s
FROM (SELECT doc::jsonb AS d FROM stageserve_staging) AS s
ON CONFLICT (request_id) DO NOTHING
""",
}


def ensure_schema(conn: Any) -> None:
    """Create what is missing (idempotent; concurrent replicas wait for one another)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(_DDL)
        cur.execute("SELECT max(version) FROM stageserve_schema")
        found = cur.fetchone()[0]
        if found is None:
            cur.execute("INSERT INTO stageserve_schema VALUES (%s)", (SCHEMA_VERSION,))
        elif found > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database's history schema is version {found}, newer than this "
                f"stageserve's ({SCHEMA_VERSION}): upgrade stageserve"
            )
