"""What the gateway records: Prometheus metrics, the audit trail, the activation journal.

`GatewayMetrics` (metrics.py, hot-path counters in fast_metrics.py), `AuditWriter`
(audit.py), `ActivationJournal` (journal.py) and the `stageserve which` command
(journal_cli.py). Below the pool and the routes: it never imports them.
"""

__all__ = ["activation", "audit", "audit_file", "fast_metrics", "journal", "journal_cli", "metrics"]
