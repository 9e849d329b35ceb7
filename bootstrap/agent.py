"""Wiring for the agent: which retriever, and the agent loop under its leader lock.

Its model comes from ``bootstrap/models.py`` (``decision_model``): built once per process and
shared by every goal, since a GGUF model costs its full size in memory and seconds to load.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from sqlalchemy import select

from adapters.llm import DecisionModel, ModelUnavailable
from adapters.retrieval import (
    CombinedRetriever,
    HybridRetriever,
    RelationalHistoryRetriever,
    Retriever,
    SearchRetriever,
)
from bootstrap.container import Janus
from bootstrap.models import decision_model, model_spec
from bootstrap.settings import Settings
from commands.agent import Agent
from commands.agent_step import AgentConfig
from commands.process_manager import run_while_leader
from projections.hybrid import HybridHit
from projections.relational.tables import confirmations
from projections.search import SearchResult


def agent_config(settings: Settings) -> AgentConfig:
    return AgentConfig(
        max_steps=settings.agent_max_steps,
        token_budget=settings.agent_token_budget,
        model_timeout_seconds=settings.agent_model_timeout_seconds,
        concurrency=settings.agent_concurrency,
        seed=settings.agent_seed,
        max_tokens=settings.agent_max_tokens,
    )


def build_retriever(janus: Janus) -> Retriever:
    """Earlier goals, plus document chunks when this process can read the knowledge views (it
    runs them, embedded: one process per folder; or they live on a server): hybrid retrieval
    when it can read both the vector and the graph view, vector search when only the first."""
    history = RelationalHistoryRetriever(janus.views_engine, lambda: janus.relational.position)
    settings = janus.settings
    here = settings.runtime_views.split(",")
    if settings.qdrant_url is None and "vector" not in here:
        return history
    vector, graph = janus.knowledge_views["vector"], janus.knowledge_views["graph"]

    def search(query: str, limit: int) -> list[SearchResult]:
        return janus.knowledge.search().search(query, limit)

    chunks = SearchRetriever(search, lambda: vector.position)
    if settings.graph_url is None and "graph" not in here:
        return CombinedRetriever(chunks, history)

    def hybrid(query: str, limit: int) -> list[HybridHit]:
        return janus.knowledge.hybrid().search(query, limit)

    def position() -> int:
        return min(vector.position, graph.position)

    return CombinedRetriever(HybridRetriever(hybrid, position, fallback=chunks), history)


def build_agent(janus: Janus, model: DecisionModel | None = None) -> Agent:
    settings = janus.settings

    def pending(goal_id: UUID) -> list[UUID]:
        query = select(confirmations.c.id).where(
            confirmations.c.goal_id == str(goal_id), confirmations.c.status == "pending"
        )
        with janus.views_engine.connect() as conn:
            return [UUID(str(row)) for row in conn.execute(query).scalars()]

    return Agent(
        janus.app,
        janus.commands,
        model or decision_model(settings),
        build_retriever(janus),
        settings.node_id,
        agent_config(settings),
        pending_confirmations=pending,
    )


def run_agent(
    janus: Janus, stop: threading.Event, poll: float, model: DecisionModel | None = None
) -> None:
    """Work goals while holding the ``agent`` leader lock; a second process waits as standby."""
    run_while_leader(janus.leader_lock("agent"), lambda: build_agent(janus, model), stop, poll)


def agent_status(janus: Janus) -> dict[str, Any]:
    """Whether the agent's model can run here, and how far the agent has read the log."""
    model = decision_model(janus.settings)
    try:
        model.check()
        state = "ready"
    except ModelUnavailable as error:
        state = f"unavailable: {error}"
    head = janus.app.head()
    position = janus.app.tracked_position("agent")
    return {
        "enabled": janus.settings.agent_enabled,
        "model": model.name,
        "model_spec": model_spec(janus.settings) or None,
        "runtime": model.runtime,
        "state": state,
        "position": position,
        "head": head,
        "lag": max(head - position, 0),
    }
