"""``janus audit``: a goal's whole story as a causation tree, and search across goals.

Reads the event store directly, so it works with the API, NATS and the views down; the views
only make finding things faster. JSON output (``--json``) is stable; its shapes are documented
on each command.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from cli.audit_graph import GraphFormat, print_goal_graph
from cli.common import (
    BadInput,
    DebugFlag,
    JsonFlag,
    ScanFlag,
    action_text,
    cli_errors,
    grid,
    notes,
    open_store,
    out,
    print_json,
    progress_bar,
    when,
)
from domain.goal import Goal
from event_store.reader import LoggedEvent
from replay.decision_view import cost_line, prompt_excerpt
from replay.search import Criteria, search
from replay.story import Node, causation_tree, goal_story, tree_json
from replay.values import aware, one_line, parse_point, plain, short

app = typer.Typer(
    no_args_is_help=True, help="A goal's whole story as a causation tree, and search across them."
)


@app.callback()
def _audit(debug: DebugFlag = False) -> None:
    """A goal's whole story as a causation tree, and search across goals, decisions,
    confirmations and effects."""


# -- janus audit goal ------------------------------------------------------------------------


@app.command("goal")
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
    with cli_errors(ctx, files=True), open_store(scan) as store:
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


def _decision_label(ident: str, facts: dict[str, Any], full: bool) -> str:
    digest = str(facts.get("model_digest") or "")[:19]
    shown = dict(facts.get("parameters") or {})
    if "json_schema" in shown and not full:  # the whole tool catalogue: see --full
        shown["json_schema"] = (facts.get("runtime") or {}).get("schema_digest", "…")
    params = json.dumps(shown, sort_keys=True)
    lines = [
        f"[bold cyan]decision {ident}[/] → {escape(action_text(facts.get('action')))}",
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
            f" → {escape(action_text(replay['action']) if replay['action'] else '(no action)')}"
        )
    return "\n".join(lines)


def _confirmation_label(ident: str, facts: dict[str, Any]) -> str:
    status = facts.get("status")
    colour = {"granted": "green", "denied": "red", "expired": "yellow"}.get(str(status), "white")
    action = escape(action_text({"name": facts["action"], "parameters": facts["parameters"]}))
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


@app.command("search")
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
    with cli_errors(ctx, files=True):
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
