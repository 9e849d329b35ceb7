"""``janus goals``: submit goals, record scripted decisions, complete, fail or cancel them, and
answer the question the agent asked about one."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID, uuid4

import typer
from sqlalchemy import select

from bootstrap.container import Janus
from cli.common import (
    ActorName,
    BadInput,
    IdempotencyKey,
    JsonFlag,
    Params,
    cli_errors,
    fresh,
    invocation,
    open_janus,
    out,
    parse_params,
    print_json,
    print_outcome,
    print_written,
    resolve,
)
from commands import goal_flow
from commands import models as m
from commands.agent_commands import AgentCommands, AnswerQuestion
from commands.invocation import CommandResult
from domain.confirmation import HazardClass
from projections import relational
from replay import render

app = typer.Typer(no_args_is_help=True, help="Submit goals and record decisions on them.")

MAX_TTL_SECONDS = 30 * 24 * 3600


@app.command("submit")
def goals_submit(
    text: Annotated[str, typer.Argument(help="What the agent should achieve.")],
    priority: Annotated[int, typer.Option(help="0 (lowest) to 9 (highest).")] = 5,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a goal; prints its id and the log position it was written at."""
    with cli_errors():
        cmd = m.SubmitGoal.model_validate({"text": text, "priority": priority})
        with open_janus() as janus:
            result = janus.commands.submit_goal(cmd, invocation(key=idempotency_key))
    print_written("goal", result, as_json)


@app.command("decide")
def goals_decide(
    goal_id: Annotated[str, typer.Argument(help="The goal the decision is for.")],
    action: Annotated[str, typer.Option(help="The action the agent chose, e.g. unlock_door.")],
    param: Params = None,
    hazard: Annotated[
        str | None,
        typer.Option(help="low, medium or high: also ask a human to confirm the action."),
    ] = None,
    ttl: Annotated[
        int | None, typer.Option(help="Seconds the confirmation stays open (needs --hazard).")
    ] = None,
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a scripted agent decision and, with --hazard, request a confirmation for it."""
    with cli_errors(), open_janus() as janus:
        goal = resolve(janus, relational.goals, goal_id)
        decision, hazard_class = _decision_command(goal, action, parse_params(param), hazard, ttl)
        inv = invocation(actor_name)
        if hazard_class is None:
            recorded, requested = janus.commands.record_decision(decision, inv), None
        else:
            done = goal_flow.decide(
                janus.commands, decision, inv, hazard_class, ttl, ask_a_person=True
            )
            recorded, requested = done.decision, done.confirmation
    _print_decision(recorded, requested, as_json)


def _decision_command(
    goal_id: UUID, action: str, params: dict[str, str], hazard: str | None, ttl: int | None
) -> tuple[m.RecordDecision, HazardClass | None]:
    """Everything is validated before anything is run, so a bad --hazard records nothing."""
    if ttl is not None and hazard is None:
        raise BadInput("--ttl only applies with --hazard")
    if ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
        raise BadInput(f"--ttl must be between 1 and {MAX_TTL_SECONDS} seconds")
    chosen = {"name": action, "parameters": params}
    decision = m.RecordDecision.model_validate(
        {
            "goal_id": str(goal_id),
            "decision_id": str(uuid4()),
            "model": "scripted",
            "prompt": f"operator script: choose the action for goal {goal_id}",
            "raw_output": json.dumps(chosen, sort_keys=True),
            "action": chosen,
        }
    )
    if hazard is None:
        return decision, None
    try:
        return decision, HazardClass(hazard)
    except ValueError:
        raise BadInput(f"--hazard {hazard!r} is not one of low, medium or high") from None


def _print_decision(
    recorded: CommandResult, requested: CommandResult | None, as_json: bool
) -> None:
    confirmation_id = str(requested.aggregate_id) if requested else None
    position = (requested or recorded).position
    if as_json:
        print_json(
            {
                "decision_id": str(recorded.aggregate_id),
                "confirmation_id": confirmation_id,
                "position": position,
            }
        )
        return
    console = out()
    console.print(f"decision {recorded.aggregate_id} {recorded.outcome}")
    if requested is not None:
        console.print(f"confirmation {requested.aggregate_id} {requested.outcome}")
    console.print(f"at position {position}")


GoalId = Annotated[str, typer.Argument(help="The goal (a full id or a unique prefix).")]


@app.command("complete")
def goals_complete(
    goal_id: GoalId,
    summary: Annotated[str, typer.Option(help="What was achieved.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Mark an open goal achieved."""
    with cli_errors(), open_janus() as janus:
        cmd = m.CompleteGoal(goal_id=resolve(janus, relational.goals, goal_id), summary=summary)
        result = janus.commands.complete_goal(cmd, invocation(actor_name, idempotency_key))
    print_outcome("goal", result)


@app.command("fail")
def goals_fail(
    goal_id: GoalId,
    reason: Annotated[str, typer.Option(help="Why the goal cannot be achieved.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Mark an open goal failed."""
    with cli_errors(), open_janus() as janus:
        cmd = m.FailGoal(goal_id=resolve(janus, relational.goals, goal_id), reason=reason)
        result = janus.commands.fail_goal(cmd, invocation(actor_name, idempotency_key))
    print_outcome("goal", result)


@app.command("cancel")
def goals_cancel(
    goal_id: GoalId,
    reason: Annotated[
        str, typer.Option(help="Why, for the audit trail.")
    ] = "cancelled by operator",
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Cancel an open goal and withdraw its pending confirmations (their actions never run)."""
    with cli_errors(), open_janus() as janus:
        cmd = m.CancelGoal(goal_id=resolve(janus, relational.goals, goal_id), reason=reason)

        def pending(ident: UUID, position: int) -> list[UUID]:
            fresh(janus)
            return _pending_confirmations(janus, ident)

        inv = invocation(actor_name, idempotency_key)
        done = goal_flow.cancel_goal(janus.commands, cmd, inv, pending)
    print_outcome("goal", done.goal)
    for withdrawn in done.withdrawn_ids:
        out().print(f"confirmation {withdrawn}: cancelled")


def _pending_confirmations(janus: Janus, goal_id: UUID) -> list[UUID]:
    table = relational.confirmations
    query = select(table.c.id).where(table.c.goal_id == str(goal_id), table.c.status == "pending")
    with janus.views_engine.connect() as conn:
        return [UUID(str(ident)) for ident in conn.execute(query).scalars()]


@app.command("list")
def goals_list(
    status: Annotated[
        str | None, typer.Option(help="Only goals in this status (e.g. submitted).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List goals, newest first."""
    with cli_errors(), open_janus() as janus:
        fresh(janus)
        rows = janus.views.goals(status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    out().print(render.goals_table(rows))


@app.command("answer")
def goals_answer(
    goal_id: Annotated[str, typer.Argument(help="The goal whose open question to answer.")],
    answer: Annotated[str, typer.Argument(help="The answer the agent reads at its next step.")],
) -> None:
    """Answer the question the agent asked (ask_operator) about a goal."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.goals, goal_id)
        cmd = AnswerQuestion.model_validate({"goal_id": str(ident), "answer": answer})
        result = AgentCommands(janus.commands.runner).answer_question(cmd, invocation())
    print_outcome("question", result)
