"""History: what served when (the activation journal), what was answered (audit records) and
what happened afterwards (outcomes), stored as files or in PostgreSQL and read back by the
gateway, `api.load(as_of=...)`, `stageserve replay` and `stageserve report`.

events.py (the journal's events and the "what served at T" fold), records.py (rows read back),
files.py (JSON-lines files and their SQLite index), spool.py + postgres/ (the PostgreSQL sink
and reader), store.py (opening either by location).
"""

__all__ = ["events", "files", "postgres", "records", "spool", "store"]
