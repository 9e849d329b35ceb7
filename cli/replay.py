"""``janus replay``: the past rebuilt: state at a point, a goal step by step, decisions re-run
through a model, forks.

Reads the event store directly, so it works with the API, NATS and the views down. JSON output
(``--json``) is stable; its shapes are documented on each command.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import create_engine, select

from adapters.llm import parse_action
from bootstrap.container import Janus
from bootstrap.models import redecide_model
from cli.common import (
    ActorName,
    BadInput,
    DebugFlag,
    JsonFlag,
    action_text,
    cli_errors,
    grid,
    open_store,
    operator,
    out,
    print_json,
    progress_bar,
    when,
)
from domain.goal import Goal
from projections.relational import tables as relational
from replay import render
from replay.decision_view import decision_rows
from replay.redecide import record_comparisons, redecide
from replay.store import Store, topics_for
from replay.story import event_line_json
from replay.time_travel import (
    Diff,
    Step,
    aggregate_at,
    diff_positions,
    fork_goal,
    goal_steps,
    rebuild_view,
    replay_to,
    versions_at,
)
from replay.values import aggregate_json, aware, one_line, parse_point, short

app = typer.Typer(
    no_args_is_help=True,
    help="The past rebuilt: state at a point, a goal step by step, decisions re-run, forks.",
)


# -- janus replay state --------------------------------------------------------------------------


@app.callback()
def _replay(debug: DebugFlag = False) -> None:
    """The past rebuilt from the log: state at a point, a goal step by step, decisions re-run
    through a model, and forks."""


@app.command("state")
def replay_state(
    ctx: typer.Context,
    at: Annotated[
        str | None, typer.Option(help="A log position, or an ISO time (the last event by then).")
    ] = None,
    aggregate: Annotated[
        str | None, typer.Option(help="Only this aggregate (full id or unique prefix).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="Only aggregates of this type, e.g. Goal.")
    ] = None,
    view: Annotated[
        bool, typer.Option("--view", help="Rebuild the relational view into a scratch database.")
    ] = False,
    scratch: Annotated[
        Path | None,
        typer.Option(help="With --view: keep the scratch SQLite database at this path."),
    ] = None,
    diff: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Compare two points: --diff A B (positions or times)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows in the table (0: all).")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Aggregates as they were at a point in the log: exactly what replaying 1..P gives.

    --json prints {"position", "events_replayed", "aggregates": [{"id", "type", "version",
    "created_on", "modified_on", "last_position", "state"}]}; with --aggregate
    {"position", "aggregate"} (null if it did not exist yet); with --diff {"from_position",
    "to_position", "created", "changed", "unchanged"}; with --view {"position", "goals",
    "decisions", "confirmations", "effects", "jobs"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        if (at is None) == (diff is None):
            raise BadInput("give either --at POINT or --diff A B")
        ident = store.resolve_aggregate(aggregate) if aggregate else None
        if diff is not None:
            before = store.position_of(parse_point(diff[0], "--diff"), "--diff")
            after = store.position_of(parse_point(diff[1], "--diff"), "--diff")
            with progress_bar("replaying", after) as progress:
                result = diff_positions(store, before, after, ident, progress)
            _print_diff(result, as_json)
            return
        assert at is not None
        position = store.position_of(parse_point(at, "--at"), "--at")
        if view:
            _state_view(store, position, scratch, as_json)
        elif ident is not None:
            _state_one(store, ident, position, as_json)
        else:
            _state_all(store, position, kind, limit, as_json)


def _state_one(store: Store, ident: UUID, position: int, as_json: bool) -> None:
    aggregate = aggregate_at(store, ident, position)
    body = aggregate_json(aggregate) if aggregate is not None else None
    if as_json:
        print_json({"position": position, "aggregate": body})
        return
    if body is None:
        out().print(f"{ident} did not exist yet at position {position}")
        return
    out().print(state_table(body, position))


def state_table(body: dict[str, Any], position: int | None = None) -> Table:
    where = f" at position {position}" if position is not None else ""
    title = f"{body['type']} {body['id']} v{body['version']}{where}"
    table = grid(title, "field", "value", fold=("value",))
    table.add_row("modified", when(body["modified_on"]))
    for key, value in body["state"].items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(key, escape(str(shown)))
    return table


def _state_all(store: Store, position: int, kind: str | None, limit: int, as_json: bool) -> None:
    if kind is not None:
        topics_for([kind])  # unknown types fail here, before the scan
    if as_json or limit == 0:
        _state_every(store, position, kind, as_json)
        return
    # Only what is printed is decoded: the rest is counted from the log's raw records.
    with progress_bar("replaying", position) as progress:
        found = versions_at(store, position, progress)
    chosen = found.newest(kind)
    shown = [(ident, found.load(store, ident)) for ident in reversed(chosen[-limit:])]
    counts: dict[str, int] = {}
    for ident in chosen:
        counts[found.types[ident]] = counts.get(found.types[ident], 0) + 1
    last = {ident: found.last_position(ident) for ident, _ in shown}
    _state_table(position, found.events, counts, shown, last, len(chosen))


def _state_every(store: Store, position: int, kind: str | None, as_json: bool) -> None:
    with progress_bar("replaying", position) as progress:
        replayed = replay_to(store, position, progress)
    chosen = [
        a
        for a in replayed.visible(include_bookkeeping=kind == "CommandRecord")
        if kind is None or type(a).__qualname__ == kind
    ]
    if as_json:
        print_json(
            {
                "position": position,
                "events_replayed": replayed.events,
                "aggregates": [aggregate_json(a, replayed.last_position[a.id]) for a in chosen],
            }
        )
        return
    counts: dict[str, int] = {}
    for aggregate in chosen:
        counts[type(aggregate).__qualname__] = counts.get(type(aggregate).__qualname__, 0) + 1
    shown = [(a.id, a) for a in reversed(chosen)]
    _state_table(position, replayed.events, counts, shown, replayed.last_position, len(chosen))


def _state_table(
    position: int,
    events: int,
    counts: dict[str, int],
    shown: list[tuple[UUID, Any]],
    last: dict[UUID, int],
    total: int,
) -> None:
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"
    table = grid(
        f"At position {position}: {summary} ({events} events)",
        "type", "id", "v", "status", "last change", "modified", fold=(),
    )  # fmt: skip
    for ident, aggregate in shown:
        status = getattr(aggregate, "status", None)
        table.add_row(
            type(aggregate).__qualname__,
            short(ident),
            str(aggregate.version),
            str(getattr(status, "value", status) or "-"),
            f"#{last[ident]}",
            when(aggregate.modified_on),
        )
    if len(shown) < total:
        table.caption = f"{total - len(shown)} more: --limit 0 for all, or --json"
    out().print(table)


def _print_diff(result: Diff, as_json: bool) -> None:
    if as_json:
        print_json(result.json())
        return
    table = grid(
        f"From position {result.before} to {result.after}: {len(result.created)} created, "
        f"{len(result.changed)} changed, {result.unchanged} unchanged",
        "", "type", "id", "version", "changes", fold=("changes",),
    )  # fmt: skip
    for sign, changes in (("+", result.created), ("~", result.changed)):
        for change in changes:
            versions = f"{change.from_version or 0}→{change.to_version}"
            if sign == "+":
                detail = "; ".join(f"{k}={_brief(b)}" for k, (_, b) in change.fields.items())
            else:
                detail = "; ".join(
                    f"{k}: {_brief(a)} → {_brief(b)}" for k, (a, b) in change.fields.items()
                )
            table.add_row(sign, change.type, short(change.ident), versions, escape(detail))
    out().print(table)


def _brief(value: Any) -> str:
    if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return one_line(str(text), 60)


def _state_view(store: Store, position: int, scratch: Path | None, as_json: bool) -> None:
    if scratch is not None and scratch.exists():
        raise BadInput(f"--scratch {scratch} already exists: give a new path")
    with tempfile.TemporaryDirectory(prefix="janus-view-") as tmp:
        path = scratch or Path(tmp) / "view.sqlite"
        engine = create_engine(f"sqlite:///{path}")
        try:
            with progress_bar("building the view", position) as progress:
                rebuild_view(store, position, engine, progress)
            tables = {
                "goals": relational.goals,
                "decisions": relational.decisions,
                "confirmations": relational.confirmations,
                "effects": relational.effects,
                "jobs": relational.jobs,
            }
            with engine.connect() as conn:
                rows = {
                    name: list(conn.execute(select(t)).mappings()) for name, t in tables.items()
                }
        finally:
            engine.dispose()
    if as_json:
        body = {name: json.loads(render.to_json(r)) for name, r in rows.items()}
        print_json({"position": position, **body})
        return
    console = out()
    console.print(f"The relational view as of position {position}" + _kept(scratch))
    console.print(render.goals_table(rows["goals"]))
    console.print(render.confirmations_table(rows["confirmations"], _view_now(position, store)))
    console.print(render.effects_table(rows["effects"]))
    console.print(render.jobs_table(rows["jobs"]))


def _kept(scratch: Path | None) -> str:
    return f" (kept in {scratch})" if scratch else ""


def _view_now(position: int, store: Store) -> datetime:
    """Time left on confirmations is shown as of the chosen point, not as of today."""
    if position == 0:
        return datetime.now().astimezone()
    return aware(store.at_or_before(position).event.timestamp)


# -- janus replay goal ---------------------------------------------------------------------------


@app.command("goal")
def replay_goal(
    ctx: typer.Context,
    goal_id: Annotated[str, typer.Argument(help="The goal: a full id or a unique prefix.")],
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Print every step without waiting (for scripts).")
    ] = False,
    interactive: Annotated[
        bool, typer.Option("--interactive", hidden=True, help="Prompt even without a terminal.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Step through the goal's story one event at a time, with the state after each.

    At a terminal: Enter (or n) for the next step, b to go back, q to stop. --json prints one
    JSON object per step and line: {"step", "total", "event", "state", "changes"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        ident = store.resolve_aggregate(goal_id, Goal)
        with progress_bar("reading the log", store.head()) as progress:
            steps = list(goal_steps(store, ident, progress))
    prompting = not no_input and not as_json and (interactive or sys.stdin.isatty())
    if as_json:
        for step in steps:
            typer.echo(json.dumps(_step_json(step), ensure_ascii=False))
        return
    if not prompting:
        for step in steps:
            out().print(step_view(step))
        return
    _walk(steps)


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "step": step.number,
        "total": step.total,
        "event": event_line_json(step.logged),
        "state": step.state,
        "changes": {k: {"from": a, "to": b} for k, (a, b) in step.changes.items()},
    }


def step_view(step: Step) -> Table:
    logged = step.logged
    meta = logged.event.meta
    title = (
        f"step {step.number}/{step.total} · #{logged.position} · {when(logged.event.timestamp)}"
        f" · {logged.type_name} · {meta.actor} on {meta.node_id}"
    )
    table = grid(escape(title), "field", "after", "before", fold=("after", "before"))
    state = step.state
    table.add_row("aggregate", f"{state['type']} {short(state['id'])} v{state['version']}", "")
    for key, value in state["state"].items():
        if key in step.changes:
            table.add_row(f"[bold]{key}[/]", f"[green]{_brief(value)}[/]",
                          f"[red]{_brief(step.changes[key][0])}[/]")  # fmt: skip
    if isinstance(logged.event, Goal.DecisionRecorded):
        for key, value in decision_rows(logged.event):
            table.add_row(key, escape(value), "")
    unchanged = [k for k in state["state"] if k not in step.changes]
    if unchanged:
        table.caption = "unchanged: " + ", ".join(unchanged)
    return table


def _walk(steps: list[Step]) -> None:
    console = out()
    index = 0
    while 0 <= index < len(steps):
        console.print(step_view(steps[index]))
        answer = typer.prompt("[enter] next · b back · q quit", default="", show_default=False)
        answer = answer.strip()
        if answer in ("q", "quit"):
            return
        index = max(0, index - 1) if answer in ("b", "back") else index + 1
    console.print("end of the story")


# -- janus replay decisions ----------------------------------------------------------------------


@app.command("decisions")
def replay_decisions(
    ctx: typer.Context,
    goal: Annotated[str, typer.Option("--goal", help="The goal whose decisions to re-run.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="A .gguf file, or 'rules' for the deterministic built-in model "
            "(default: the configured local model)."
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Save each comparison on the goal as a Goal.DecisionReplayed event."
        ),
    ] = False,
    actor_name: ActorName = None,
    full: Annotated[bool, typer.Option("--full", help="Show prompts and whole outputs.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-run each recorded decision's prompt through a model and compare the decisions.

    Nothing is written unless --record asks for it (recording the same comparison again writes
    nothing new). Without a usable model it says so and exits 1. --json prints {"goal_id",
    "model": {"name", "digest"}, "agreed", "total", "recorded_position" (null without --record),
    "decisions": [{"decision_id", "position", "recorded": {"model", "model_digest",
    "parameters", "action"}, "replayed": {"action", "seconds"}, "agree"}]} (--full adds prompt
    and raw outputs).
    """
    recorded_at: int | None = None
    with cli_errors(ctx, files=True), open_store() as store:
        ident = store.resolve_aggregate(goal, Goal)
        chosen = redecide_model(model, store.settings)
        with progress_bar("re-deciding", 0) as progress:
            results = redecide(store, ident, chosen, parse_action, progress)
        digest = chosen.digest
        if record and results:
            actor = operator(actor_name)
            janus = Janus.for_cli(store.settings)
            try:
                recorded_at = record_comparisons(janus.commands, ident, chosen, results, actor)
            finally:
                janus.close()
    agreed = sum(r.agree for r in results)
    if as_json:
        print_json(
            {
                "goal_id": str(ident),
                "model": {"name": chosen.name, "digest": digest},
                "agreed": agreed,
                "total": len(results),
                "recorded_position": recorded_at,
                "decisions": [r.json(full) for r in results],
            }
        )
        return
    console = out()
    table = grid(
        f"{agreed} of {len(results)} decisions agree · model {chosen.name} {digest[:19]}",
        "#", "decision", "recorded", "replayed", "agree", fold=("recorded", "replayed"),
    )  # fmt: skip
    for result in results:
        new = action_text(result.new_action) if result.new_action else "(no action parsed)"
        recorded = action_text(result.recorded_action)
        if full:
            recorded += "\n" + result.recorded_output
            new += "\n" + result.new_output
        table.add_row(
            f"#{result.position}",
            short(result.decision_id),
            escape(recorded),
            escape(new),
            "[green]yes[/]" if result.agree else "[red]no[/]",
        )
    console.print(table)
    if recorded_at is not None:
        console.print(f"comparisons recorded on the goal, up to position {recorded_at}")


# -- janus replay fork ---------------------------------------------------------------------------


@app.command("fork")
def replay_fork(
    ctx: typer.Context,
    goal_id: Annotated[str, typer.Argument(help="The goal to fork: a full id or unique prefix.")],
    from_position: Annotated[
        str, typer.Option("--from", help="The log position (or ISO time) to fork at.")
    ],
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a new goal whose history is the original's up to a point, to continue from there.

    The goal, its plan and its decisions are copied; confirmations and effects are not (they
    acted on the world once already). --json prints {"fork_id", "forked_from",
    "forked_at_position", "decisions_copied", "plan_copied", "position"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        ident = store.resolve_aggregate(goal_id, Goal)
        position = store.position_of(parse_point(from_position, "--from"), "--from")
        actor = operator(actor_name)
        janus = Janus.for_cli(store.settings)
        try:
            fork = fork_goal(janus.commands, store, ident, position, actor)
        finally:
            janus.close()
    if as_json:
        print_json(fork.json())
        return
    out().print(
        f"goal {fork.fork_id} forked from {fork.original_id} at position {fork.position}: "
        f"{fork.decisions} decision(s) copied, written up to position {fork.last_position}"
    )
