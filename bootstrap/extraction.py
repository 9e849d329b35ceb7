"""Wiring for entity extraction: the extractor and its loop under its leader lock.

Its model (``bootstrap.models.entity_model``) is the agent's llama.cpp model, loaded once per
process and shared, asked through ``LlmEntityModel``; ``rules`` picks the deterministic twin.
"""

from __future__ import annotations

import threading
from typing import Any

from adapters.entities import EntityModel
from bootstrap.container import Janus
from bootstrap.models import entity_model
from commands.extraction import EntityExtraction
from commands.process_manager import run_while_leader

__all__ = ["build_extraction", "extraction_status", "run_extraction"]


def build_extraction(janus: Janus, model: EntityModel | None = None) -> EntityExtraction:
    settings = janus.settings
    # The knowledge views' own blob store, text extractor and chunking: chunk indexes must name
    # the views' chunks.
    parts = janus.knowledge
    return EntityExtraction(
        janus.app,
        janus.commands.runner,
        model or entity_model(settings),
        parts.blobs,
        parts.extractor,
        parts.chunking,
        max_chunks=settings.extraction_max_chunks,
    )


def run_extraction(
    janus: Janus, stop: threading.Event, poll: float, model: EntityModel | None = None
) -> None:
    """Extract while holding the ``extraction`` leader lock; a second process waits."""
    lock = janus.leader_lock("extraction")
    run_while_leader(lock, lambda: build_extraction(janus, model), stop, poll)


def extraction_status(janus: Janus) -> dict[str, Any]:
    return {"enabled": janus.settings.extraction_enabled, **build_extraction(janus).status()}
