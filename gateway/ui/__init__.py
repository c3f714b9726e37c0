"""The read-only console at /ui: models, one model's versions and stage timeline, live traffic.

Server-rendered HTML (Jinja2, autoescaped: names and cards come from registry writers) with
one small script; every route sits in one Router so one guard gates them all. It reads the
pool, the gateway's own counters, the activation journal and the history the sync writes
into the cache; it never touches the predict path and never shows input values.
"""

__all__ = ["live", "pages", "rates", "render", "routes", "timeline"]
