"""The git (GTO) registry: tags parsed into events, folded into state, queried and written.

`RegistryRepo` (repository.py) is the handle every reader and writer takes; `GitRegistry`
(git_registry.py) adds the queries (queries.py) and writes (writer.py, publish.py) to it.
Also: git.py (the git CLI), remote.py (mirrors of URLs), check.py (`registry check`).
"""

__all__ = [
    "check",
    "events",
    "git",
    "git_registry",
    "gto_tags",
    "publish",
    "queries",
    "remote",
    "repository",
    "views",
    "writer",
]
