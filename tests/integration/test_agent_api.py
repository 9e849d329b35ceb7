"""Answering the agent's question over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootstrap.container import Janus
from domain.goal import Goal, GoalStatus
from tests.support.agent import goal, make_agent, settle, submit
from tests.support.api import Api, is_problem, serve_api


@pytest.fixture
def api(janus: Janus) -> Iterator[Api]:
    with serve_api(janus) as served:
        yield served


def test_an_operator_answers_the_agents_question_over_http_and_the_agent_carries_on(
    api: Api, janus: Janus
) -> None:
    goal_id = submit(janus, "do the usual")
    agent = make_agent(janus)
    settle(janus, agent)
    path = f"/v1/goals/{goal_id}/answer"
    assert is_problem(api.post(path, json={"answer": ""}), 422)
    answered = api.post(path, json={"answer": "water the plants"})
    assert answered.status_code == 200, answered.text
    settle(janus, agent)
    done = goal(janus, goal_id)
    assert done.status is GoalStatus.COMPLETED
    (question,) = done.questions.values()
    assert question.answer == "water the plants" and question.answered_by.startswith("user:")
    head = janus.app.head()
    refused = api.post(path, json={"answer": "something else"})
    assert refused.status_code in (409, 422) and janus.app.head() == head
    assert isinstance(done, Goal)
