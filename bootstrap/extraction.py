"""Wiring for entity extraction: which entity model, and the extractor loop under its lock.

The llama.cpp model is the agent's (``bootstrap.agent.decision_model``, loaded once per process and
shared), asked through ``LlmEntityModel``; ``rules`` picks the deterministic twin.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from adapters.entities import EntityModel, LlmEntityModel, ModelUnavailable, RulesEntityModel
from bootstrap.agent import RULES, decision_model, model_spec
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.extraction import EntityExtraction

__all__ = ["build_extraction", "entity_model", "extraction_status", "run_extraction"]

log = logging.getLogger(__name__)


def entity_model(settings: Settings) -> EntityModel:
    spec = settings.extraction_model
    if spec == RULES or (spec == "auto" and model_spec(settings) == RULES):
        return RulesEntityModel()
    agent_settings = (
        settings if spec == "auto" else settings.model_copy(update={"agent_model": spec})
    )
    return LlmEntityModel(decision_model(agent_settings), seed=settings.agent_seed)


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
    if not lock.acquire(timeout=float("inf"), stop=stop):
        return
    extraction = build_extraction(janus, model)
    reported: str | None = None
    try:
        while not stop.is_set():
            if not lock.held:
                log.warning("extraction lost its leader lock; re-acquiring")
                return
            try:
                read = extraction.run_once()
            except ModelUnavailable as error:
                if str(error) != reported:
                    log.error("extraction waiting, documents are kept: %s", error)
                    reported = str(error)
                stop.wait(max(poll * 10, 5.0))
                continue
            reported = None
            if read == 0:
                stop.wait(poll)
    finally:
        lock.release()


def extraction_status(janus: Janus) -> dict[str, Any]:
    return {"enabled": janus.settings.extraction_enabled, **build_extraction(janus).status()}
