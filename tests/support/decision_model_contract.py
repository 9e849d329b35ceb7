"""The one contract every DecisionModel keeps, run against each implementation.

Subclass ``DecisionModelContract`` and provide a ``model`` fixture (the rules twin here in
tests/integration, SmolLM2 through llama.cpp in tests/e2e/test_agent_llm.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.agent_llm import ASSISTANT_START, build_prompt, render
from adapters.llm import DecisionModel
from commands.agent_step import AgentConfig
from commands.agent_tools import ToolCatalogue

CATALOGUE = ToolCatalogue()
TOOLS = ", ".join(
    f"{t.name}({', '.join(t.parameters['properties'])})" for t in CATALOGUE.tools.values()
)
TEMPLATE = build_prompt()


def agent_parameters(**overrides: Any) -> dict[str, Any]:
    prefix = len(render(TEMPLATE, TOOLS, [])) - len(ASSISTANT_START)
    return {
        **AgentConfig().sampling(),
        "prefix_chars": prefix,
        "json_schema": CATALOGUE.json_schema(),
        **overrides,
    }


def agent_prompt(goal: str, *turns: tuple[str, str]) -> str:
    return render(TEMPLATE, TOOLS, [("human", f"Goal: {goal}"), *turns])


class DecisionModelContract:
    @pytest.fixture
    def model(self) -> DecisionModel:
        raise NotImplementedError

    def test_identifies_itself_and_can_run(self, model: DecisionModel) -> None:
        assert model.name and model.runtime
        assert model.digest.startswith("sha256:") and len(model.digest) == 71
        model.check()

    def test_answers_the_agent_prompt_with_a_catalogue_tool_call(
        self, model: DecisionModel
    ) -> None:
        raw = model.generate(agent_prompt("unlock the front door"), agent_parameters())
        assert CATALOGUE.parse(raw)["name"] == "unlock_door"

    def test_same_prompt_seed_and_zero_temperature_give_the_same_output(
        self, model: DecisionModel
    ) -> None:
        prompt = agent_prompt("tell the operator the boiler is fixed")
        first = model.generate(prompt, agent_parameters())
        model.generate(agent_prompt("lock the garage door"), agent_parameters())  # in between
        assert model.generate(prompt, agent_parameters()) == first

    def test_a_completion_reports_tokens_and_timings(self, model: DecisionModel) -> None:
        done = model.complete(agent_prompt("unlock the back door"), agent_parameters())
        assert done.input_tokens > 0 and done.output_tokens > 0
        assert done.prompt_ms >= 0 and done.generation_ms > 0
        assert set(done.timings()) == {"prompt_ms", "generation_ms", "tokens_per_s"}
        CATALOGUE.parse(done.text)
