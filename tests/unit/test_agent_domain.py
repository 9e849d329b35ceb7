"""The agent's facts on a goal, and its tool catalogue: pure domain, no store."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from commands.agent_tools import InvalidToolCall, ToolCatalogue
from domain.errors import InvalidTransition, InvalidValue
from domain.goal import Decision, Goal, require_goal_text
from domain.meta import Actor, ActorKind, CommandContext

CTX = CommandContext("c", "g", "c", Actor(ActorKind.AGENT, "agent"), "node")


def a_goal() -> Goal:
    return Goal.submit(uuid4(), "unlock the front door", "alice", 5, CTX)


def a_decision(step: int, name: str = "unlock_door") -> Decision:
    return Decision(
        decision_id=uuid4(), model="m", model_digest="sha256:x", parameters={}, prompt="p",
        context_ids=[], raw_output="{}", action={"name": name, "parameters": {}}, timings={},
        step=step, usage={"input_tokens": 3, "output_tokens": 2},
    )  # fmt: skip


def test_steps_are_numbered_from_one_and_each_ask_is_a_new_attempt() -> None:
    goal = a_goal()
    assert goal.next_step == 1
    assert goal.start_step(1, CTX) == 1
    assert goal.start_step(1, CTX) == 2  # the first ask was abandoned
    with pytest.raises(InvalidTransition):
        goal.start_step(2, CTX)
    goal.record_decision(a_decision(1), CTX)
    assert goal.next_step == 2 and goal.start_step(2, CTX) == 1


def test_a_step_takes_at_most_one_decision() -> None:
    goal = a_goal()
    goal.record_decision(a_decision(1), CTX)
    with pytest.raises(InvalidTransition, match="at most one decision"):
        goal.record_decision(a_decision(1), CTX)


def test_only_the_current_attempt_can_fail() -> None:
    goal = a_goal()
    goal.start_step(1, CTX)
    goal.start_step(1, CTX)
    with pytest.raises(InvalidTransition):
        goal.fail_attempt(1, 1, "schema", "bad", "", CTX)
    goal.fail_attempt(1, 2, "schema", "bad json", "{", CTX)
    assert goal.failed_attempts == {1: ["bad json"]}


def test_a_question_is_answered_once() -> None:
    goal = a_goal()
    decision = a_decision(1, "ask_operator")
    goal.record_decision(decision, CTX)
    question_id = uuid4()
    assert goal.ask_operator(question_id, decision.decision_id, "which door?", CTX)
    assert not goal.ask_operator(question_id, decision.decision_id, "which door?", CTX)
    assert goal.answer_question(question_id, "front", "user:alice", CTX)
    assert not goal.answer_question(question_id, "front", "user:alice", CTX)
    with pytest.raises(InvalidTransition):
        goal.answer_question(question_id, "back", "user:alice", CTX)
    assert goal.open_question() is None


@pytest.mark.parametrize("text", ["", " \n ", "a\x00b", "bell\x07", "\x1b[31mred", "rtl\u202e"])
def test_goal_text_refuses_blank_and_control_characters(text: str) -> None:
    with pytest.raises(InvalidValue):
        require_goal_text(text)


def test_goal_text_keeps_layout_and_emoji() -> None:
    text = "unlock\tthe front door\nplease 👨\u200d👩\u200d👧"
    assert require_goal_text(text) == text


def test_the_catalogue_accepts_only_its_tools_with_their_parameters() -> None:
    catalogue = ToolCatalogue()
    assert catalogue.parse('{"name": "unlock_door", "parameters": {"door": "back"}}') == {
        "name": "unlock_door",
        "parameters": {"door": "back"},
    }
    bad = [
        "unlock it",
        "[]",
        '{"name": "rm_rf", "parameters": {}}',
        '{"name": "unlock_door", "parameters": {"door": "all"}}',
        '{"name": "unlock_door", "parameters": {}}',
        '{"name": "unlock_door", "parameters": {"door": "front", "force": "yes"}}',
        '{"name": "finish", "parameters": {"summary": ""}}',
        '{"name": "finish"}',
    ]
    for raw in bad:
        with pytest.raises(InvalidToolCall):
            catalogue.parse(raw)


def test_the_schema_offers_exactly_the_catalogue_and_has_a_stable_digest() -> None:
    catalogue = ToolCatalogue()
    names = [alt["properties"]["name"]["const"] for alt in catalogue.json_schema()["anyOf"]]
    assert names == catalogue.names
    assert {"finish", "ask_operator", "search_history", "unlock_door"} <= set(names)
    assert catalogue.digest() == ToolCatalogue().digest()
    assert catalogue["unlock_door"].hazard.value == "high"
    json.dumps(catalogue.json_schema())
