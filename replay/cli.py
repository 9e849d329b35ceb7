"""``janus``: the operator's command line. Thin: parse, call one command service or view, print.

Each invocation builds its own Janus from settings (``JANUS_*``), so it works beside a running
``janus run`` process as well as alone on the embedded store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer
from eventsourcing.persistence import InterfaceError, OperationalError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Table, select
from sqlalchemy.exc import OperationalError as SqlOperationalError
from typer._click.exceptions import ClickException  # typer vendors Click
from typer.core import TyperGroup

from bootstrap import main as bootstrap_main
from bootstrap.container import Janus
from bootstrap.settings import Settings
from bootstrap.status import NO_EXECUTOR, NO_SCHEDULER, runtime_status
from commands import goal_flow
from commands import models as m
from commands.errors import CommandError, NotFound
from commands.invocation import CommandResult, Invocation
from domain.confirmation import HazardClass
from domain.errors import DomainError
from domain.meta import Actor, ActorKind
from projections import relational
from projections.runner import ProjectionStalled
from replay import render
from replay.demo import DEFAULT_HOME, run_demo


class _Boundary(TyperGroup):
    """The last error boundary, around every command: what a command let escape (a setting
    out of range found late, a bug) is one line and exit 1; ``--debug`` shows the traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise  # Click's own ways out: an exit code, Ctrl-C, a usage error
        except Exception as error:  # noqa: BLE001 - reported, then exit 1: never swallowed
            if _State.debug:
                Console(stderr=True).print_exception()
            known = render.error_text(error)
            line = (known if known != str(error) else f"{type(error).__name__}: {error}").strip()
            hint = "" if _State.debug else " (--debug shows the traceback)"
            _fail(f"{line.splitlines()[0] if line else type(error).__name__}{hint}")
            raise typer.Exit(1) from None


app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, cls=_Boundary)
goals_app = typer.Typer(no_args_is_help=True, help="Submit goals and record decisions on them.")
confirmations_app = typer.Typer(
    no_args_is_help=True, help="Answer hazardous actions waiting for a human."
)
jobs_app = typer.Typer(no_args_is_help=True, help="Recurring and one-off scheduled actions.")
effects_app = typer.Typer(no_args_is_help=True, help="What granted actions did to the world.")
app.add_typer(goals_app, name="goals")
app.add_typer(confirmations_app, name="confirmations")
app.add_typer(jobs_app, name="jobs")
app.add_typer(effects_app, name="effects")


MIN_PREFIX = 4
MAX_TTL_SECONDS = 30 * 24 * 3600
HEX_DIGITS = frozenset("0123456789abcdef-")


class BadInput(Exception):
    """A command-line value no command could accept."""


class _State:
    debug = False


# -- plumbing ------------------------------------------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ActorName = Annotated[
    str | None, typer.Option("--as", help="Who is acting (default: $USER, else 'operator').")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="Repeat the command safely: the same key replays the first answer."),
]
Params = Annotated[
    list[str] | None,
    typer.Option("--param", help="An action parameter as key=value (string); repeatable."),
]


def _out() -> Console:
    # Built per call so that colour and width follow whatever stdout is right now.
    return Console(highlight=False)


def _fail(message: str) -> None:
    Console(stderr=True, highlight=False).print(
        f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True
    )


@contextmanager
def _errors() -> Iterator[None]:
    """Errors a user can act on become one red line and exit code 1; bugs keep their traceback."""
    try:
        yield
    except (
        BadInput,
        ValidationError,
        CommandError,
        DomainError,
        OperationalError,
        InterfaceError,
        SqlOperationalError,
        ProjectionStalled,
        TimeoutError,
    ) as error:
        if _State.debug:
            Console(stderr=True).print_exception()
        _fail(render.error_text(error))
        raise typer.Exit(1) from None


@contextmanager
def _janus() -> Iterator[Janus]:
    janus = Janus.for_cli(Settings())
    try:
        yield janus
    finally:
        janus.close()


def _fresh(janus: Janus) -> None:
    """Reads come from the views: bring the embedded view up to the log's head first."""
    janus.relational.catch_up()


def _invocation(actor_name: str | None = None, key: str | None = None) -> Invocation:
    """Checked here, where they enter: every view stores the actor and the key's command id."""
    name = m.actor_name(actor_name or os.environ.get("USER") or "operator")
    checked = m.idempotency_key(key) if key is not None else None
    return Invocation(Actor(ActorKind.USER, name), idempotency_key=checked)


def _params(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {pair!r} is not key=value")
        params[key.strip()] = value
    return params


def _resolve(janus: Janus, table: Table, value: str) -> UUID:
    """A full id, or a unique prefix of one as the tables show them (as git does with hashes)."""
    kind = str(table.name).removesuffix("s")
    with suppress(ValueError):
        return UUID(value)
    prefix = value.lower()
    if len(prefix) < MIN_PREFIX or not set(prefix) <= HEX_DIGITS:
        raise BadInput(f"{kind} id {value!r} is neither a UUID nor a prefix of one")
    _fresh(janus)
    with janus.views_engine.connect() as conn:
        query = select(table.c.id).where(table.c.id.startswith(prefix, autoescape=True)).limit(2)
        matches = list(conn.execute(query).scalars())
    if not matches:
        raise NotFound(kind, f"{value}…")
    if len(matches) > 1:
        raise BadInput(f"{kind} id prefix {value!r} is ambiguous: give more characters")
    return UUID(matches[0])


def _outcome(kind: str, result: CommandResult) -> None:
    replayed = " (replayed)" if result.replayed else ""
    _out().print(f"{kind} {result.aggregate_id}: {result.outcome}{replayed}")


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _written(kind: str, result: CommandResult, as_json: bool) -> None:
    """What scripts need from a create: the new id, and the position to wait on."""
    if as_json:
        ident = str(result.aggregate_id)
        _print_json({f"{kind}_id": ident, "position": result.position, "outcome": result.outcome})
        return
    _out().print(f"{kind} {result.aggregate_id} {result.outcome} at position {result.position}")


# -- root ----------------------------------------------------------------------------------------


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Janus: durable goals, decisions, confirmations, effects and jobs, from the terminal.

    Settings come from JANUS_* variables; with none set, Janus runs embedded under ./.janus.
    Tables show ids shortened; commands take a full id or any unique prefix of one.
    """
    _State.debug = debug


@app.command()
def run() -> None:
    """Run the all-in-one Janus process (views, executor, expiry, scheduler) until stopped."""
    with _errors():
        bootstrap_main.main()


@app.command()
def demo(
    home: Annotated[
        Path, typer.Option(help="Where the demo keeps its data; wiped at the start.")
    ] = DEFAULT_HOME,
    fast: Annotated[
        bool, typer.Option("--fast", help="Shorter waits (used by the tests).")
    ] = False,
) -> None:
    """Tell the main story: a hazardous action survives a crash and runs exactly once."""
    raise typer.Exit(run_demo(home, fast=fast, debug=_State.debug))


# -- goals ---------------------------------------------------------------------------------------


@goals_app.command("submit")
def goals_submit(
    text: Annotated[str, typer.Argument(help="What the agent should achieve.")],
    priority: Annotated[int, typer.Option(help="0 (lowest) to 9 (highest).")] = 5,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a goal; prints its id and the log position it was written at."""
    with _errors():
        cmd = m.SubmitGoal.model_validate({"text": text, "priority": priority})
        with _janus() as janus:
            result = janus.commands.submit_goal(cmd, _invocation(key=idempotency_key))
    _written("goal", result, as_json)


@goals_app.command("decide")
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
    with _errors(), _janus() as janus:
        goal = _resolve(janus, relational.goals, goal_id)
        decision, hazard_class = _decision_command(goal, action, _params(param), hazard, ttl)
        inv = _invocation(actor_name)
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
        _print_json(
            {
                "decision_id": str(recorded.aggregate_id),
                "confirmation_id": confirmation_id,
                "position": position,
            }
        )
        return
    out = _out()
    out.print(f"decision {recorded.aggregate_id} {recorded.outcome}")
    if requested is not None:
        out.print(f"confirmation {requested.aggregate_id} {requested.outcome}")
    out.print(f"at position {position}")


GoalId = Annotated[str, typer.Argument(help="The goal (a full id or a unique prefix).")]


@goals_app.command("complete")
def goals_complete(
    goal_id: GoalId,
    summary: Annotated[str, typer.Option(help="What was achieved.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Mark an open goal achieved."""
    with _errors(), _janus() as janus:
        cmd = m.CompleteGoal(goal_id=_resolve(janus, relational.goals, goal_id), summary=summary)
        result = janus.commands.complete_goal(cmd, _invocation(actor_name, idempotency_key))
    _outcome("goal", result)


@goals_app.command("fail")
def goals_fail(
    goal_id: GoalId,
    reason: Annotated[str, typer.Option(help="Why the goal cannot be achieved.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Mark an open goal failed."""
    with _errors(), _janus() as janus:
        cmd = m.FailGoal(goal_id=_resolve(janus, relational.goals, goal_id), reason=reason)
        result = janus.commands.fail_goal(cmd, _invocation(actor_name, idempotency_key))
    _outcome("goal", result)


@goals_app.command("cancel")
def goals_cancel(
    goal_id: GoalId,
    reason: Annotated[
        str, typer.Option(help="Why, for the audit trail.")
    ] = "cancelled by operator",
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Cancel an open goal and withdraw its pending confirmations (their actions never run)."""
    with _errors(), _janus() as janus:
        cmd = m.CancelGoal(goal_id=_resolve(janus, relational.goals, goal_id), reason=reason)

        def pending(ident: UUID, position: int) -> list[UUID]:
            _fresh(janus)
            return _pending_confirmations(janus, ident)

        inv = _invocation(actor_name, idempotency_key)
        done = goal_flow.cancel_goal(janus.commands, cmd, inv, pending)
    _outcome("goal", done.goal)
    for withdrawn in done.withdrawn_ids:
        _out().print(f"confirmation {withdrawn}: cancelled")


def _pending_confirmations(janus: Janus, goal_id: UUID) -> list[UUID]:
    table = relational.confirmations
    query = select(table.c.id).where(table.c.goal_id == str(goal_id), table.c.status == "pending")
    with janus.views_engine.connect() as conn:
        return [UUID(str(ident)) for ident in conn.execute(query).scalars()]


@goals_app.command("list")
def goals_list(
    status: Annotated[
        str | None, typer.Option(help="Only goals in this status (e.g. submitted).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List goals, newest first."""
    with _errors(), _janus() as janus:
        _fresh(janus)
        rows = janus.views.goals(status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    _out().print(render.goals_table(rows))


# -- confirmations -------------------------------------------------------------------------------


@confirmations_app.command("list")
def confirmations_list(
    status: Annotated[
        str, typer.Option(help="pending, granted, denied, expired, cancelled or all.")
    ] = "pending",
    as_json: JsonFlag = False,
) -> None:
    """List confirmations with their deadlines and the time left to answer."""
    with _errors(), _janus() as janus:
        _fresh(janus)
        rows = janus.views.confirmations(None if status == "all" else status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    _out().print(render.confirmations_table(rows, datetime.now(UTC)))


@confirmations_app.command("grant")
def confirmations_grant(
    confirmation_id: Annotated[str, typer.Argument(help="The confirmation to grant.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Grant a pending confirmation: the executor then performs its action, once."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.confirmations, confirmation_id)
        result = janus.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=ident), _invocation(actor_name, idempotency_key)
        )
        running = runtime_status(janus).executor_running
    _outcome("confirmation", result)
    if running is False:
        _out().print(f"queued: {NO_EXECUTOR}")


@confirmations_app.command("deny")
def confirmations_deny(
    confirmation_id: Annotated[str, typer.Argument(help="The confirmation to deny.")],
    reason: Annotated[str, typer.Option(help="Why the action must not happen.")],
    actor_name: ActorName = None,
) -> None:
    """Deny a pending confirmation: its action will never run."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.confirmations, confirmation_id)
        cmd = m.DenyConfirmation(confirmation_id=ident, reason=reason)
        result = janus.commands.deny_confirmation(cmd, _invocation(actor_name))
    _outcome("confirmation", result)


# -- jobs ----------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(as_json: JsonFlag = False) -> None:
    """List jobs with their trigger, misfire policy and fire counts."""
    with _errors(), _janus() as janus:
        _fresh(janus)
        rows = janus.views.jobs()
    if as_json:
        typer.echo(render.to_json(rows))
        return
    _out().print(render.jobs_table(rows))


def _trigger(every: float | None, cron: str | None, at: str | None) -> dict[str, Any]:
    options = (("interval", every), ("cron", cron), ("date", at))
    given = [(kind, value) for kind, value in options if value is not None]
    if len(given) != 1:
        raise BadInput("give exactly one of --every, --cron or --at")
    kind, value = given[0]
    field = {"interval": "seconds", "cron": "expression", "date": "run_at"}[kind]
    return {"kind": kind, field: value}


@jobs_app.command("schedule")
def jobs_schedule(
    name: Annotated[str, typer.Argument(help="A name for people, e.g. heartbeat.")],
    every: Annotated[float | None, typer.Option(help="Fire every this many seconds.")] = None,
    cron: Annotated[str | None, typer.Option(help="Fire on a crontab, e.g. '*/5 * * * *'.")] = None,
    at: Annotated[
        str | None, typer.Option(help="Fire once at this ISO time, with a timezone.")
    ] = None,
    action: Annotated[str, typer.Option(help="The action each fire performs.")] = "notify",
    param: Params = None,
    misfire: Annotated[
        str | None,
        typer.Option(help="Fires due while Janus was down: skip, run_once or catch_up."),
    ] = None,
    max_catch_up: Annotated[
        int | None, typer.Option(help="With catch_up: run at most this many missed fires.")
    ] = None,
    overlap: Annotated[
        str | None,
        typer.Option(help="A time that comes while the previous fire runs: skip or queue."),
    ] = None,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Schedule a job; exactly one of --every, --cron and --at says when it fires."""
    with _errors():
        payload: dict[str, Any] = {
            "name": name,
            "trigger": _trigger(every, cron, at),
            "action": {"name": action, "parameters": _params(param)},
        }
        if misfire is not None:
            payload["misfire_policy"] = misfire
        if max_catch_up is not None:
            payload["max_catch_up"] = max_catch_up
        if overlap is not None:
            payload["overlap"] = overlap
        cmd = m.ScheduleJob.model_validate(payload)
        with _janus() as janus:
            result = janus.commands.schedule_job(cmd, _invocation(key=idempotency_key))
    _written("job", result, as_json)


@jobs_app.command("fires")
def jobs_fires(
    job_id: Annotated[str, typer.Argument(help="The job whose fires to show.")],
    as_json: JsonFlag = False,
) -> None:
    """List a job's fires, oldest first: succeeded, failed, missed or of unknown outcome."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.jobs, job_id)
        _fresh(janus)
        if not any(row["id"] == str(ident) for row in janus.views.jobs(include_removed=True)):
            raise NotFound("job", ident)
        rows = janus.views.fires(ident)
        scheduler = runtime_status(janus).scheduler_running
    if as_json:
        typer.echo(render.to_json(rows))
        return
    _out().print(render.fires_table(rows))
    if scheduler is False:
        _out().print(f"{'no fires yet; ' if not rows else ''}{NO_SCHEDULER}")


JobId = Annotated[str, typer.Argument(help="The job to change.")]


@jobs_app.command("pause")
def jobs_pause(job_id: JobId) -> None:
    """Pause a job: it stops firing until resumed."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.jobs, job_id)
        result = janus.commands.pause_job(m.PauseJob(job_id=ident), _invocation())
    _outcome("job", result)


@jobs_app.command("resume")
def jobs_resume(job_id: JobId) -> None:
    """Resume a paused job."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.jobs, job_id)
        result = janus.commands.resume_job(m.ResumeJob(job_id=ident), _invocation())
    _outcome("job", result)


@jobs_app.command("remove")
def jobs_remove(job_id: JobId) -> None:
    """Remove a job for good; its fires stay in the log."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.jobs, job_id)
        result = janus.commands.remove_job(m.RemoveJob(job_id=ident), _invocation())
    _outcome("job", result)


# -- effects -------------------------------------------------------------------------------------


@effects_app.command("list")
def effects_list(
    status: Annotated[
        str | None,
        typer.Option(help="started, succeeded, failed, outcome_unknown or reconciled."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List effects: each granted action and what became of it."""
    with _errors(), _janus() as janus:
        _fresh(janus)
        rows = janus.views.effects(status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    _out().print(render.effects_table(rows))


@effects_app.command("reconcile")
def effects_reconcile(
    effect_id: Annotated[str, typer.Argument(help="An effect whose outcome is unknown.")],
    happened: Annotated[
        bool,
        typer.Option(
            "--happened/--did-not-happen", help="What you found out in the world (required)."
        ),
    ],
    note: Annotated[str, typer.Option(help="How you know, for the audit trail.")] = "",
    actor_name: ActorName = None,
) -> None:
    """Record an operator's word on an effect nobody else could vouch for."""
    with _errors(), _janus() as janus:
        ident = _resolve(janus, relational.effects, effect_id)
        cmd = m.ReconcileEffect(effect_id=ident, happened=happened, note=note)
        result = janus.commands.reconcile_effect(cmd, _invocation(actor_name))
    _outcome("effect", result)


def _register_operational_commands() -> None:
    """Commands that live in their own modules; imported here so ``replay.cli`` stays the root."""
    from api.serve import serve_command
    from cli.extract import app as extract_app
    from replay import projections_cli
    from replay.agent_cli import app as agent_app
    from replay.agent_cli import goals_answer
    from replay.audit_cli import audit_app, replay_app
    from replay.events_cli import events_app
    from replay.keys_cli import app as keys_app
    from replay.project_cli import project
    from replay.relay_cli import relay

    app.command("relay")(relay)
    app.command("project")(project)
    app.command("serve")(serve_command)
    app.add_typer(projections_cli.app, name="projections")
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.add_typer(events_app, name="events")
    app.add_typer(replay_app, name="replay")
    app.add_typer(agent_app, name="agent")
    app.add_typer(extract_app, name="extract")
    goals_app.command("answer")(goals_answer)


_register_operational_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
