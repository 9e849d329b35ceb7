"""Goals: submit, list, read one (with its latest decision and pending confirmations), cancel,
answer the agent's question."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from api import schemas as s
from api.actions import accepted
from api.deps import Cursor, FreshViewer, Limit, OperatorCall
from api.problems import responses
from commands import models as m
from commands.agent_commands import AgentCommands, AnswerQuestion
from domain.goal import GoalStatus

router = APIRouter(prefix="/v1/goals", tags=["goals"])


@router.post(
    "",
    status_code=202,
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 409, 413, 422, 503),
)
async def submit_goal(body: s.GoalSubmission, call: OperatorCall) -> Response:
    """Submit a goal: 202 with its id and the log position it was written at."""
    commands = call.api.janus.commands
    return await call.respond(
        lambda: accepted(commands.submit_goal(body.command(), call.invocation)),
        status_code=202,
        location=lambda done: f"/v1/goals/{done.id}",
    )


@router.get("", response_model=s.Page[s.GoalOut], responses=responses(401, 403, 422, 503))
async def list_goals(
    read: FreshViewer,
    status: GoalStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> s.Page[s.GoalOut]:
    """Goals, newest first, optionally in one status."""
    return await read(lambda: read.api.reads.goals(status, limit, cursor))


@router.get("/{goal_id}", response_model=s.GoalDetail, responses=responses(401, 403, 404, 422, 503))
async def get_goal(read: FreshViewer, goal_id: UUID) -> s.GoalDetail:
    """One goal with its latest decision and the confirmations still waiting for an answer."""
    return await read(lambda: read.api.reads.goal(goal_id))


@router.post(
    "/{goal_id}/cancel",
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def cancel_goal(
    goal_id: UUID,
    call: OperatorCall,
    body: Annotated[s.GoalCancellation | None, Body()] = None,
) -> Response:
    """Cancel an open goal; a goal already completed, failed or cancelled is a 409."""
    reason = (body or s.GoalCancellation()).reason
    cmd = m.CancelGoal(goal_id=goal_id, reason=reason)
    commands = call.api.janus.commands
    return await call.respond(lambda: accepted(commands.cancel_goal(cmd, call.invocation)))


@router.post(
    "/{goal_id}/answer",
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def answer_goal_question(
    goal_id: UUID, call: OperatorCall, body: Annotated[s.QuestionAnswer, Body()]
) -> Response:
    """Answer the question the agent asked about the goal (its ask_operator step); the agent
    reads the answer at its next step. A goal with no open question is a 422."""
    cmd = AnswerQuestion(goal_id=goal_id, answer=body.answer, question_id=body.question_id)
    agent = AgentCommands(call.api.janus.commands.runner)
    return await call.respond(lambda: accepted(agent.answer_question(cmd, call.invocation)))


@router.get(
    "/{goal_id}/timeline",
    response_model=s.Timeline,
    responses=responses(401, 403, 404, 422, 503),
)
async def goal_timeline(
    read: FreshViewer,
    goal_id: UUID,
    after: Annotated[int, Query(ge=0, le=2**62, description="Entries after this position.")] = 0,
    limit: Limit = 500,
) -> s.Timeline:
    """Every event of the goal (its confirmations and effects too), in log order, with the
    command or event that caused each one."""
    return await read(lambda: read.api.reads.timeline(goal_id, after, limit))
