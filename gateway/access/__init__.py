"""Who may call which model: credentials (API keys, JWTs) become a `Principal`, and the access
policy decides which actions (`predict`, `read`, `metrics`) it may take on which model and
stage. `Access` (guard.py) is the one object the HTTP layer asks."""

from gateway.access.guard import Access, build_access
from gateway.access.principal import ANONYMOUS, Principal

__all__ = ["ANONYMOUS", "Access", "Principal", "build_access"]
