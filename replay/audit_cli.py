"""``janus audit`` and ``janus replay``: what happened to a goal, and the past rebuilt.

Both read the event store directly, so they work with the API, NATS and the views down; the
views only make finding things faster. Also the plumbing ``janus events`` shares: one-line
errors with exit code 1 (``--debug`` for the traceback), progress bars on long scans, Ctrl-C.

JSON output (``--json``) is stable; its shapes are documented on each command.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree
from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError

from adapters.llm import ModelUnavailable
from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.audit_graph import GraphFormat, print_goal_graph
from commands.errors import CommandError
from commands.models import actor_name as checked_actor
from domain.errors import DomainError
from domain.goal import Goal
from domain.meta import Actor, ActorKind
from event_store.reader import LoggedEvent
from projections import relational
from projections.runner import ProjectionStalled
from replay import render
from replay.audit import (
    BadInput,
    Criteria,
    Node,
    ProgressFn,
    Store,
    UnreadableEvent,
    aggregate_json,
    aware,
    causation_tree,
    event_line_json,
    goal_story,
    one_line,
    parse_point,
    parse_position,
    plain,
    search,
    short,
    topics_for,
    tree_json,
)
from replay.decision_view import cost_line, decision_rows, prompt_excerpt
from replay.exchange import ExchangeError
from replay.redecide import load_model, record_comparisons, redecide
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

PROGRESS_THRESHOLD = 5_000
EXIT_INTERRUPTED = 130

audit_app = typer.Typer(
    no_args_is_help=True, help="A goal's whole story as a causation tree, and search across them."
)
replay_app = typer.Typer(
    no_args_is_help=True,
    help="The past rebuilt: state at a point, a goal step by step, decisions re-run, forks.",
)


# -- plumbing shared by audit, replay and events ------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (stable shapes, see --help).")]
ScanFlag = Annotated[
    bool, typer.Option("--scan", help="Ignore the views and scan the log (slower, same answer).")
]
DebugFlag = Annotated[
    bool, typer.Option("--debug", help="Show the full traceback when the command fails.")
]


def debug_requested(ctx: typer.Context | None) -> bool:
    """``--debug`` given to ``janus`` (or to this group), wherever the group is mounted."""
    current: Any = ctx
    while current is not None:
        if current.params.get("debug"):
            return True
        current = current.parent
    return False


def out() -> Console:
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    err().print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)


def error_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, SQLAlchemyError):
        return f"views unavailable: {str(error).splitlines()[0]}"
    if isinstance(error, PersistenceError):
        return f"store unavailable: {str(error).splitlines()[0]}"
    if isinstance(error, ModelUnavailable):
        return f"no model: {error}"
    if isinstance(error, Exception):
        return render.error_text(error).splitlines()[0]
    return str(error)


USER_ERRORS = (
    BadInput,
    CommandError,
    DomainError,
    ValidationError,
    PersistenceError,
    SQLAlchemyError,
    UnreadableEvent,
    ExchangeError,
    ModelUnavailable,
    OSError,
    TimeoutError,
)


@contextmanager
def cli_errors(ctx: typer.Context | None = None) -> Iterator[None]:
    """What an operator can act on: one red line, exit 1. Ctrl-C: one line, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        if debug_requested(ctx):
            err().print_exception()
        fail("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except USER_ERRORS as error:
        if debug_requested(ctx):
            err().print_exception()
        fail(error_text(error))
        raise typer.Exit(1) from None
    except Exception as error:
        # Stalled projections and the like: still one line, the traceback under --debug.
        if not isinstance(error, ProjectionStalled):
            raise
        if debug_requested(ctx):
            err().print_exception()
        fail(error_text(error))
        raise typer.Exit(1) from None


@contextmanager
def open_store(scan: bool = False) -> Iterator[Store]:
    store = Store.open(Settings(), use_views=not scan)
    try:
        yield store
    finally:
        store.close()


def notes(store: Store) -> None:
    """How the store was read (views used or not), only for a person at a terminal."""
    console = err()
    if console.is_terminal:
        for note in store.notes:
            console.print(f"[dim]{escape(note)}[/]")


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[ProgressFn]:
    """A bar on stderr for long scans at a terminal; nothing otherwise."""
    console = err()
    if total < PROGRESS_THRESHOLD or not console.is_terminal:
        yield _ignore
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _ignore(_: int) -> None:
    return None


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def grid(title: str | None, *columns: str, fold: tuple[str, ...] = ()) -> Table:
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
    )
    for column in columns:
        if column in fold:
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True)
    return table


def when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return aware(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 120:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def point_option(value: str | None, what: str) -> int | datetime | None:
    return None if value is None else parse_point(value, what)


# -- janus audit goal ------------------------------------------------------------------------


@audit_app.callback()
def _audit(debug: DebugFlag = False) -> None:
    """A goal's whole story as a causation tree, and search across goals, decisions,
    confirmations and effects."""


@audit_app.command("goal")
def audit_goal(
    ctx: typer.Context,
    goal_id: Annotated[str, typer.Argument(help="The goal: a full id or a unique prefix.")],
    full: Annotated[
        bool, typer.Option("--full", help="Show whole prompts and raw model outputs.")
    ] = False,
    scan: ScanFlag = False,
    as_json: JsonFlag = False,
    graph: Annotated[
        bool, typer.Option("--graph", help="Print the goal's provenance from the graph view.")
    ] = False,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="With --graph: json, mermaid or dot.")
    ] = GraphFormat.JSON,
) -> None:
    """The goal's story: goal -> decisions -> confirmations -> effects -> what they caused.

    --graph prints its provenance subgraph from the graph view instead (decisions, confirmations,
    effects, the chunks decisions used, their documents and entities) as --format json, mermaid
    or dot.

    Every node lists its events with position, time, actor and node. --json prints
    {"goal_id", "head", "index", "tree"}; a tree node is {"kind", "id", "facts", "events",
    "children"}, an event {"position", "event_id", "type", "timestamp", "actor", "node_id",
    "command_id", "causation_id", "summary"}.
    """
    with cli_errors(ctx), open_store(scan) as store:
        ident = store.resolve_aggregate(goal_id, Goal)
        if graph:
            print_goal_graph(ident, fmt)
            return
        with progress_bar("reading the log", store.head()) as progress:
            story = goal_story(store, ident, progress)
        tree = causation_tree(story, full=full)
        notes(store)
    if as_json:
        body = {"goal_id": str(ident), "head": story.head, "index": story.source}
        print_json({**body, "tree": tree_json(tree)})
        return
    out().print(render_tree(tree, full))


def render_tree(root: Node, full: bool) -> Tree:
    tree = Tree(_label(root, full), guide_style="dim")
    _grow(tree, root, full)
    return tree


def _grow(branch: Tree, node: Node, full: bool) -> None:
    for logged in node.events:
        branch.add(_event_text(logged), style="dim")
    for child in node.children:
        _grow(branch.add(_label(child, full)), child, full)


def _event_text(logged: LoggedEvent) -> str:
    meta = logged.event.meta
    return escape(
        f"#{logged.position} {when(logged.event.timestamp)} {logged.type_name.split('.')[-1]}"
        f" by {meta.actor} on {meta.node_id}"
    )


def _label(node: Node, full: bool) -> str:
    facts = node.facts
    ident = short(node.ident)
    if node.kind == "goal":
        text = one_line(facts.get("text", ""), 200 if full else 70)
        label = f"[bold]goal {ident}[/] {escape(text)} · {facts.get('status', '?')}"
        if facts.get("forked_from"):
            label += f" · fork of {short(facts['forked_from'])} at #{facts['forked_at_position']}"
        if facts.get("outcome"):
            label += f" · {escape(one_line(str(facts['outcome']), 60))}"
        return label
    if node.kind == "decision":
        return _decision_label(ident, facts, full)
    if node.kind == "confirmation":
        return _confirmation_label(ident, facts)
    if node.kind == "effect":
        return _effect_label(ident, facts)
    if node.kind == "fork":
        return (
            f"[bold]fork {ident}[/] goal forked from here at #{facts.get('forked_at_position')}"
            f" ({facts.get('events')} events)"
        )
    details = ", ".join(f"{k}={v}" for k, v in plain(facts).items() if v is not None)
    return f"[bold]{node.kind} {ident}[/] {escape(one_line(details, 100))}"


def _action_text(action: Any) -> str:
    if not isinstance(action, dict):
        return str(action)
    params = " ".join(f"{k}={v}" for k, v in (action.get("parameters") or {}).items())
    return f"{action.get('name')} {params}".strip()


def _decision_label(ident: str, facts: dict[str, Any], full: bool) -> str:
    digest = str(facts.get("model_digest") or "")[:19]
    shown = dict(facts.get("parameters") or {})
    if "json_schema" in shown and not full:  # the whole tool catalogue: see --full
        shown["json_schema"] = (facts.get("runtime") or {}).get("schema_digest", "…")
    params = json.dumps(shown, sort_keys=True)
    lines = [
        f"[bold cyan]decision {ident}[/] → {escape(_action_text(facts.get('action')))}",
        f"  model {escape(str(facts.get('model')))} {escape(digest)} {escape(params)}",
    ]
    if facts.get("context_ids"):
        lines.append(f"  context {escape(', '.join(map(str, facts['context_ids'])))}")
    timings = facts.get("timings") or {}
    if timings:
        lines.append("  timings " + ", ".join(f"{k}={v}" for k, v in timings.items()))
    if facts.get("step"):
        cost = cost_line(timings, facts.get("usage") or {})
        lines.append(f"  step {facts['step']} · {escape(cost)}")
        lines.append(f"  asked: {escape(prompt_excerpt(str(facts.get('prompt_tail', ''))))}")
        lines.append(f"  answered: {escape(str(facts.get('raw_output_summary', '')))}")
    if full:
        lines.append("  prompt:\n" + escape(str(facts.get("prompt", ""))))
        lines.append("  raw output:\n" + escape(str(facts.get("raw_output", ""))))
    else:
        lines.append(f"  prompt: {escape(str(facts.get('prompt_summary', '')))}")
    for replay in facts.get("replays", []):
        verdict = "[green]agrees[/]" if replay["agrees"] else "[red]differs[/]"
        lines.append(
            f"  re-run #{replay['position']} with {escape(str(replay['model']))}: {verdict}"
            f" → {escape(_action_text(replay['action']) if replay['action'] else '(no action)')}"
        )
    return "\n".join(lines)


def _confirmation_label(ident: str, facts: dict[str, Any]) -> str:
    status = facts.get("status")
    colour = {"granted": "green", "denied": "red", "expired": "yellow"}.get(str(status), "white")
    action = escape(_action_text({"name": facts["action"], "parameters": facts["parameters"]}))
    label = (
        f"[bold magenta]confirmation {ident}[/] {action} · hazard {facts['hazard']}"
        f" · [{colour}]{status}[/]"
    )
    if facts.get("decided_by"):
        label += f" by {escape(str(facts['decided_by']))}"
    if facts.get("waited_seconds") is not None:
        label += f" after {seconds_text(facts['waited_seconds'])}"
    if facts.get("reason"):
        label += f" · {escape(one_line(str(facts['reason']), 60))}"
    if status == "pending":
        label += f" · expires {when(facts['expires_at'])}"
    return label


def _effect_label(ident: str, facts: dict[str, Any]) -> str:
    status = str(facts.get("status"))
    colour = {"succeeded": "green", "failed": "red", "outcome_unknown": "yellow"}.get(status)
    shown = f"[{colour}]{status}[/]" if colour else status
    label = (
        f"[bold blue]effect {ident}[/] {escape(str(facts['action']))} · {shown}"
        f" · {facts['attempts']} attempt(s) · {seconds_text(facts.get('duration_seconds'))}"
    )
    if facts.get("happened") is not None:
        label += f" · reconciled: {'happened' if facts['happened'] else 'did not happen'}"
    if facts.get("error"):
        label += f" · {escape(one_line(str(facts['error']), 60))}"
    return label


# -- janus audit search ----------------------------------------------------------------------


@audit_app.command("search")
def audit_search(
    ctx: typer.Context,
    text: Annotated[
        str | None,
        typer.Argument(help="Text to find in goals, prompts, outputs, actions, reasons."),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="goal, decision, confirmation or effect; repeatable (default: all)."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Someone who acted on it, e.g. alice or user:alice.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="e.g. pending, granted, denied, failed, outcome_unknown.")
    ] = None,
    hazard: Annotated[
        str | None, typer.Option(help="Confirmations of this hazard class: low, medium, high.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after this ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Created at or before this ISO time.")] = None,
    node: Annotated[str | None, typer.Option(help="Touched by this node id.")] = None,
    outcome_unknown: Annotated[
        bool, typer.Option("--outcome-unknown", help="Effects waiting for an operator's word.")
    ] = False,
    expired: Annotated[
        bool, typer.Option("--expired", help="Confirmations nobody answered in time.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    scan: ScanFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Find goals, decisions, confirmations and effects; newest first.

    --json prints {"index", "results": [{"kind", "id", "goal_id", "status", "hazard",
    "created_at", "updated_at", "last_position", "actors", "nodes", "title"}]}.
    """
    with cli_errors(ctx):
        if hazard is not None and hazard not in ("low", "medium", "high"):
            raise BadInput(f"--hazard {hazard!r}: use low, medium or high")
        if limit < 1:
            raise BadInput("--limit must be at least 1")
        criteria = Criteria(
            text=text,
            kinds=tuple(kind or ()),
            actor=actor,
            status=status,
            hazard=hazard,
            since=_time(since, "--since"),
            until=_time(until, "--until"),
            node=node,
            outcome_unknown=outcome_unknown,
            expired=expired,
            limit=limit,
        )
        with open_store(scan) as store, progress_bar("searching", store.head()) as progress:
            found, source = search(store, criteria, progress)
            notes(store)
    if as_json:
        print_json({"index": source, "results": [f.json() for f in found]})
        return
    table = grid(f"{len(found)} found", "kind", "id", "status", "created", "what", fold=("what",))
    for f in found:
        status_text = f.status + (f" ({f.hazard})" if f.hazard else "")
        goal = "" if f.kind == "goal" else f"goal {short(f.goal_id)} · "
        table.add_row(
            f.kind,
            short(f.ident),
            status_text,
            aware(f.created_at).strftime("%m-%d %H:%M:%S"),
            escape(goal + one_line(f.title, 100)),
        )
    out().print(table)


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    point = parse_point(value, what)
    if isinstance(point, int):
        raise BadInput(f"{what} {value!r} must be an ISO-8601 time")
    return point


# -- janus replay state --------------------------------------------------------------------------


@replay_app.callback()
def _replay(debug: DebugFlag = False) -> None:
    """The past rebuilt from the log: state at a point, a goal step by step, decisions re-run
    through a model, and forks."""


@replay_app.command("state")
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
    with cli_errors(ctx), open_store() as store:
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


@replay_app.command("goal")
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
    with cli_errors(ctx), open_store() as store:
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


@replay_app.command("decisions")
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
    actor_name: Annotated[
        str | None, typer.Option("--as", help="Who is recording (default: $USER).")
    ] = None,
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
    with cli_errors(ctx), open_store() as store:
        ident = store.resolve_aggregate(goal, Goal)
        chosen = load_model(model, store.settings)
        with progress_bar("re-deciding", 0) as progress:
            results = redecide(store, ident, chosen, progress)
        digest = chosen.digest
        if record and results:
            actor = Actor(
                ActorKind.USER, checked_actor(actor_name or os.environ.get("USER") or "operator")
            )
            janus = Janus.for_cli(store.settings)
            try:
                recorded_at = record_comparisons(janus, ident, chosen, results, actor)
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
        new = _action_text(result.new_action) if result.new_action else "(no action parsed)"
        recorded = _action_text(result.recorded_action)
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


@replay_app.command("fork")
def replay_fork(
    ctx: typer.Context,
    goal_id: Annotated[str, typer.Argument(help="The goal to fork: a full id or unique prefix.")],
    from_position: Annotated[
        str, typer.Option("--from", help="The log position (or ISO time) to fork at.")
    ],
    actor_name: Annotated[
        str | None, typer.Option("--as", help="Who is forking (default: $USER).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a new goal whose history is the original's up to a point, to continue from there.

    The goal, its plan and its decisions are copied; confirmations and effects are not (they
    acted on the world once already). --json prints {"fork_id", "forked_from",
    "forked_at_position", "decisions_copied", "plan_copied", "position"}.
    """
    with cli_errors(ctx), open_store() as store:
        ident = store.resolve_aggregate(goal_id, Goal)
        position = store.position_of(parse_point(from_position, "--from"), "--from")
        actor = Actor(
            ActorKind.USER, checked_actor(actor_name or os.environ.get("USER") or "operator")
        )
        janus = Janus.for_cli(store.settings)
        try:
            fork = fork_goal(janus, store, ident, position, actor)
        finally:
            janus.close()
    if as_json:
        print_json(fork.json())
        return
    out().print(
        f"goal {fork.fork_id} forked from {fork.original_id} at position {fork.position}: "
        f"{fork.decisions} decision(s) copied, written up to position {fork.last_position}"
    )


__all__ = [
    "audit_app",
    "cli_errors",
    "open_store",
    "parse_position",
    "progress_bar",
    "replay_app",
]
