"""An embedded Janus whose knowledge views use the fast hashing embedder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bootstrap.container import Janus
from bootstrap.settings import Settings


def knowledge_settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "database_url": None,
        "embedding_model": "hashing",
        "chunk_size": 200,
        "chunk_overlap": 20,
        "agent_enabled": False,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@contextmanager
def knowledge_janus(home: Path, **overrides: object) -> Iterator[Janus]:
    janus = Janus.build(knowledge_settings(home, **overrides))
    for view in janus.knowledge_views.values():
        view.setup()
    try:
        yield janus
    finally:
        janus.close()
