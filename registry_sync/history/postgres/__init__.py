"""PostgreSQL as the history store of many replicas: schema.py (tables, created on first
connection), shipper.py (spool -> batched COPY, idempotent), reader.py (the queries)."""

__all__ = ["reader", "schema", "shipper", "url"]
