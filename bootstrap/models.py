"""Which model runs where: the agent's, the entity extractor's and the re-decide model.

The one place that finds a local model (``agent_model``, ``model_path``, the bundled GGUF file) and
builds it. A GGUF model costs its full size in memory and seconds to load, so the decision model
is built once per process per spec (``decision_model``) and shared by every goal and by entity
extraction, which asks the same llama.cpp model through ``LlmEntityModel``. ``rules`` picks the
deterministic twins.
"""

from __future__ import annotations

import threading
from pathlib import Path

from adapters.entities import EntityModel, LlmEntityModel, RulesEntityModel
from adapters.llm import (
    INSTALL_HINT,
    AgentRulesModel,
    DecisionModel,
    LlamaCppDecisionModel,
    MissingModel,
    ModelUnavailable,
    RulesDecisionModel,
    bundled_model_path,
)
from bootstrap.settings import Settings

__all__ = ["RULES", "decision_model", "entity_model", "model_spec", "redecide_model"]

RULES = "rules"
_MODELS: dict[str, DecisionModel] = {}
_MODELS_LOCK = threading.Lock()


def model_spec(settings: Settings) -> str:
    """What ``agent_model`` resolves to: ``rules``, a path, or ``""`` when nothing is installed."""
    if settings.agent_model != "auto":
        return settings.agent_model
    if settings.model_path is not None:
        return str(settings.model_path)
    bundled = bundled_model_path()
    return str(bundled) if bundled else ""


def decision_model(settings: Settings) -> DecisionModel:
    """The agent's model, built once per process for each spec."""
    spec = model_spec(settings)
    with _MODELS_LOCK:
        if spec not in _MODELS:
            _MODELS[spec] = _build_model(spec, settings.agent_threads)
        return _MODELS[spec]


def _build_model(spec: str, threads: int) -> DecisionModel:
    if spec == RULES:
        return AgentRulesModel()
    if not spec:
        return MissingModel(f"no local model is installed; {INSTALL_HINT}")
    return LlamaCppDecisionModel(Path(spec).expanduser(), threads=threads, require_file=False)


def entity_model(settings: Settings) -> EntityModel:
    """``extraction_model``: ``auto`` asks the agent's model, ``rules`` the rules, else a path."""
    spec = settings.extraction_model
    if spec == RULES or (spec == "auto" and model_spec(settings) == RULES):
        return RulesEntityModel()
    agent_settings = (
        settings if spec == "auto" else settings.model_copy(update={"agent_model": spec})
    )
    return LlmEntityModel(decision_model(agent_settings), seed=settings.agent_seed)


def redecide_model(spec: str | None, settings: Settings) -> DecisionModel:
    """The model ``janus replay redecide`` runs the recorded prompts through.

    ``rules`` (the deterministic in-process model), a .gguf path, or the configured model file.
    Built afresh for the one command, not shared, and unlike the agent's it never falls back to
    the bundled model: re-deciding compares against a model the operator names.
    """
    chosen = spec or settings.model_path
    if chosen is None or str(chosen) == "":
        raise ModelUnavailable(
            "no model available: pass --model PATH (a .gguf file) or --model rules, "
            "or configure JANUS_MODEL_PATH"
        )
    if str(chosen) == RULES:
        return RulesDecisionModel()
    return LlamaCppDecisionModel(Path(str(chosen)).expanduser())
