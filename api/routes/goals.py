"""Goals: submit, list, read one (with its latest decision and pending confirmations), record an
agent's decision, answer the agent's question, and finish one: complete, fail or cancel."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from adapters.graph import GraphStoreError, NamespaceNotFound
from api import schemas as s
from api.actions import accepted
from api.context import ApiContext
from api.deps import (
    Call,
    Cursor,
    FreshViewer,
    Limit,
    MinPosition,
    OperatorCall,
    Produced,
    Viewer,
)
from api.freshness import ViewWaiter
from api.problems import ApiProblem, responses
from commands import goal_flow
from commands import models as m
from commands.agent_commands import AnswerQuestion
from domain.goal import GoalStatus
from projections.graph_queries import (
    GoalNotInGraph,
    GraphFormat,
    goal_provenance,
    provenance_json,
    render_provenance,
)
from projections.registry import TargetUnavailable

router = APIRouter(prefix="/v1/goals", tags=["goals"])


@router.post(
    "",
    status_code=202,
    response_model=s.CommandAccepted,
    responses=responses(400, 401, 403, 409, 413, 422, 503),
)
async def submit_goal(body: s.GoalSubmission, call: OperatorCall) -> Response:
    """Submit a goal: 202 with its id and the log position it was written at."""
    commands = call.api.parts.commands
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


WRITE = responses(400, 401, 403, 404, 409, 413, 422, 503)


@router.post(
    "/{goal_id}/decisions", status_code=202, response_model=s.DecisionAccepted, responses=WRITE
)
async def record_decision(goal_id: UUID, body: s.DecisionIn, call: OperatorCall) -> Response:
    """Record an external agent's decision on an open goal, and ask for its action: the action
    waits as a confirmation (a high hazard needs an approver's grant), then runs once.

    With a `decision_id` (or an Idempotency-Key) a repeat records nothing new."""
    cmd = body.command(goal_id)
    return await call.respond(
        lambda: _decided(call, cmd, body.ttl_seconds),
        status_code=202,
        location=lambda done: f"/v1/confirmations/{done.confirmation_id}",
    )


def _decided(call: Call, cmd: m.RecordDecision, ttl_seconds: int | None) -> Produced:
    done = goal_flow.decide(call.api.parts.commands, cmd, call.invocation, ttl_seconds=ttl_seconds)
    model = s.DecisionAccepted(
        id=done.decision.aggregate_id,
        outcome=done.decision.outcome,
        confirmation_id=done.confirmation.aggregate_id,
        confirmation_outcome=done.confirmation.outcome,
        hazard=done.hazard,
        position=done.position,
    )
    return Produced(model, done.replayed)


@router.post("/{goal_id}/complete", response_model=s.CommandAccepted, responses=WRITE)
async def complete_goal(goal_id: UUID, body: s.GoalCompletion, call: OperatorCall) -> Response:
    """Mark an open goal achieved; a goal already completed, failed or cancelled is a 409."""
    cmd = m.CompleteGoal(goal_id=goal_id, summary=body.summary)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.complete_goal(cmd, call.invocation)))


@router.post("/{goal_id}/fail", response_model=s.CommandAccepted, responses=WRITE)
async def fail_goal(goal_id: UUID, body: s.GoalFailure, call: OperatorCall) -> Response:
    """Mark an open goal failed; a goal already completed, failed or cancelled is a 409."""
    cmd = m.FailGoal(goal_id=goal_id, reason=body.reason)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.fail_goal(cmd, call.invocation)))


@router.post("/{goal_id}/cancel", response_model=s.GoalCancelled, responses=WRITE)
async def cancel_goal(
    goal_id: UUID,
    call: OperatorCall,
    body: Annotated[s.GoalCancellation | None, Body()] = None,
) -> Response:
    """Cancel an open goal and withdraw its pending confirmations (their actions never run);
    a goal already completed, failed or cancelled is a 409."""
    reason = (body or s.GoalCancellation()).reason
    cmd = m.CancelGoal(goal_id=goal_id, reason=reason)
    return await call.respond(lambda: _cancelled(call, cmd))


def _cancelled(call: Call, cmd: m.CancelGoal) -> Produced:
    api = call.api

    def pending(goal_id: UUID, position: int) -> list[UUID]:
        api.waiter.wait(position)
        return [c.id for c in api.reads.goal(goal_id).pending_confirmations]

    done = goal_flow.cancel_goal(api.parts.commands, cmd, call.invocation, pending)
    model = s.GoalCancelled(
        id=done.goal.aggregate_id,
        outcome=done.goal.outcome,
        position=done.position,
        withdrawn_confirmations=done.withdrawn_ids,
    )
    return Produced(model, done.goal.replayed)


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
    agent = call.api.parts.agent_commands
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


GRAPH_MEDIA = {GraphFormat.MERMAID: "text/vnd.mermaid", GraphFormat.DOT: "text/vnd.graphviz"}


@router.get(
    "/{goal_id}/graph",
    responses={
        200: {"content": {"text/vnd.mermaid": {}, "text/vnd.graphviz": {}}},
        **responses(401, 403, 404, 422, 503),
    },
)
async def goal_graph(
    read: Viewer,
    goal_id: UUID,
    fmt: Annotated[
        GraphFormat, Query(alias="format", description="json, or mermaid / dot text for people.")
    ] = GraphFormat.JSON,
    min_position: MinPosition = None,
) -> Response:
    """The goal's provenance subgraph from the graph view: its decisions, confirmations and
    effects, the chunks its decisions used, their documents and the entities they mention,
    each node and edge with the event id and log position that wrote it. ``min_position``
    waits (bounded) for the graph view to apply that position; past the wait, a 503."""

    def answer() -> Response:
        try:
            if min_position:
                _wait_for_graph(read.api, min_position)
            sub = goal_provenance(read.api.parts.knowledge.graph(), str(goal_id))
        except GoalNotInGraph as missing:
            raise ApiProblem(404, "not-found", str(missing)) from None
        except NamespaceNotFound:
            # Nothing is in a graph not built yet, this goal included.
            detail = f"goal {goal_id} is not in the graph view: it has not been built yet"
            raise ApiProblem(404, "not-found", detail) from None
        except (GraphStoreError, TargetUnavailable) as error:
            raise ApiProblem(503, "graph-unavailable", str(error)[:200]) from None
        if fmt is GraphFormat.JSON:
            return JSONResponse(provenance_json(str(goal_id), sub))
        text = render_provenance(str(goal_id), sub, fmt)
        return PlainTextResponse(text, media_type=GRAPH_MEDIA[fmt])

    return await read(answer)


def _wait_for_graph(api: ApiContext, position: int) -> None:
    graph = api.parts.knowledge.views["graph"]
    ViewWaiter(
        graph, api.parts.reader, api.settings.read_wait_seconds, drive=api.waiter.drive
    ).wait(position)
