"""Helpers for the agent tests: models that misbehave on purpose, and a loop that settles."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from adapters.llm import AgentRulesModel, DecisionModel
from bootstrap.agent import build_agent
from bootstrap.container import Janus
from commands import models as m
from commands.agent import Agent
from commands.agent_step import AgentConfig
from commands.invocation import Invocation
from domain.goal import Goal
from domain.meta import Actor, ActorKind

ALICE = Invocation(Actor(ActorKind.USER, "alice", role="approver"))


class ScriptedModel(DecisionModel):
    """Answers from a script, one output per call (the last one repeats); records the prompts."""

    name = "scripted-model"

    def __init__(self, outputs: Sequence[str | dict[str, Any]]) -> None:
        self.outputs = [o if isinstance(o, str) else json.dumps(o) for o in outputs]
        self.prompts: list[str] = []

    @property
    def digest(self) -> str:
        return "sha256:scripted"

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        self.prompts.append(prompt)
        return self.outputs[min(len(self.prompts), len(self.outputs)) - 1]


class StuckModel(DecisionModel):
    """Never answers until released: a model call that hangs."""

    name = "stuck-model"

    def __init__(self) -> None:
        self.release = threading.Event()

    @property
    def digest(self) -> str:
        return "sha256:stuck"

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        self.release.wait(30)
        return "{}"


def make_agent(janus: Janus, model: DecisionModel | None = None, **config: Any) -> Agent:
    agent = build_agent(janus, model or AgentRulesModel())
    if config:
        agent.config = AgentConfig(**config)
        agent.worker.config = agent.config
    return agent


def settle(janus: Janus, agent: Agent, rounds: int = 50) -> None:
    """Run the agent and the executor until neither finds anything new to read."""
    executor = janus.executor()
    for _ in range(rounds):
        read = agent.run_once() + executor.run_once()
        janus.relational.catch_up()
        if read == 0:
            return
    raise AssertionError("the agent and the executor did not settle")


def submit(janus: Janus, text: str) -> UUID:
    return janus.commands.submit_goal(m.SubmitGoal(text=text), ALICE).aggregate_id


def goal(janus: Janus, goal_id: UUID) -> Goal:
    found = janus.app.repository.get(goal_id)
    assert isinstance(found, Goal)
    return found


def events_of(janus: Janus, goal_id: UUID, kind: type) -> list[Any]:
    return [e for e in janus.app.repository.event_store.get(goal_id) if isinstance(e, kind)]


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)
    return value


class CrowdedModel(DecisionModel):
    """Counts how many calls are inside it at once; each call lingers until ``limit`` arrive."""

    name = "crowded-model"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()
        self.crowd = threading.Condition(self.lock)

    @property
    def digest(self) -> str:
        return "sha256:crowded"

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        with self.crowd:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.crowd.notify_all()
            self.crowd.wait_for(lambda: self.inside >= self.limit, timeout=2)
            self.inside -= 1
        return json.dumps({"name": "finish", "parameters": {"summary": "done"}})


class BrokenModel(ScriptedModel):
    """Fails inside the model call the way llama.cpp does when a decode goes wrong."""

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        self.prompts.append(prompt)
        raise RuntimeError("llama_decode returned -3")
