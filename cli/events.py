"""``janus events``: the log itself: tail it, show one event, export and import it.

Reads the event store directly; works with the API, NATS and the views down.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from eventsourcing.persistence import Notification
from rich.cells import cell_len, get_character_cell_size
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from cli.common import (
    ActorName,
    BadInput,
    DebugFlag,
    JsonFlag,
    RequireSignature,
    cli_errors,
    export_size_hint,
    grid,
    open_store,
    operator,
    out,
    print_json,
    progress_bar,
)
from event_store.reader import LoggedEvent
from replay.exchange import Imported, export_events, import_events
from replay.store import Store, topics_for
from replay.values import aware, event_json, event_summary, parse_point, short

app = typer.Typer(no_args_is_help=True, help="The event log itself: tail, show, export and import.")

RawFilter = Callable[[Notification], bool]
EventFilter = Callable[[LoggedEvent], bool]


@app.callback()
def _events(debug: DebugFlag = False) -> None:
    """The event log itself: tail it, show one event, export it to a file and import it."""


# -- tail ----------------------------------------------------------------------------------------


def _filters(ident: UUID | None, correlation: str | None) -> tuple[RawFilter, EventFilter]:
    needle = f'"correlation_id":"{correlation}"'.encode() if correlation else None

    def raw(notification: Notification) -> bool:
        if ident is not None and UUID(str(notification.originator_id)) != ident:
            return False
        return needle is None or needle in notification.state

    def decoded(logged: LoggedEvent) -> bool:
        return correlation is None or logged.event.meta.correlation_id == correlation

    return raw, decoded


def _last_matching(
    store: Store,
    count: int,
    after: int,
    upto: int,
    topics: list[str],
    raw: RawFilter,
    decoded: EventFilter,
) -> list[LoggedEvent]:
    """The last ``count`` matching events in (after, upto], reading backwards in widening
    windows so that a plain tail never reads the whole log."""
    found: list[LoggedEvent] = []
    high, window = upto, max(4 * count, 256)
    with progress_bar("searching the log", upto - after) as progress:
        while high > after and len(found) < count:
            low = max(after, high - window)
            chunk = [
                logged
                for batch in store.pages(low, high, topics)
                for logged in (store.decode(n) for n in batch if raw(n))
                if decoded(logged)
            ]
            progress(high - low)
            found = chunk + found
            high, window = low, window * 4
    return found[-count:] if count else []


UUID_TEXT = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _shortened(text: str) -> str:
    """Ids inside a summary cut to their first eight characters, as the tables show them."""
    return UUID_TEXT.sub(r"\1", text)


def _print_events(
    events: list[LoggedEvent], as_json: bool, wide: bool = False, page: bool = False
) -> None:
    """One line per event with short ids (``wide``: full ids, long summaries folded). With
    ``page`` and a terminal, more lines than it has go through a pager."""
    if as_json:
        for logged in events:
            typer.echo(json.dumps(event_json(logged), ensure_ascii=False))
        return
    if not events:
        return
    rows = []
    # Narrow, say only what tells the events apart: no node when there is one, no date within
    # a day.
    one_node = len({logged.event.meta.node_id for logged in events}) == 1 and not wide
    days = {aware(logged.event.timestamp).date() for logged in events}
    time_format = "%H:%M:%S" if len(days) == 1 and not wide else "%m-%d %H:%M:%S"
    for logged in events:
        meta = logged.event.meta
        ident = str(logged.originator_id) if wide else short(logged.originator_id)
        who = str(meta.actor) if one_node else f"{meta.actor}@{meta.node_id}"
        summary = f"{who} · {event_summary(logged.event, 160)}"
        rows.append(
            (
                str(logged.position),
                aware(logged.event.timestamp).strftime(time_format),
                f"{logged.type_name} {ident} v{logged.originator_version}",
                summary if wide else _shortened(summary),
            )
        )
    # Positions, times and ids are never cut; only the summary gives way: cut at the edge of
    # the terminal, or (--wide) wrapped onto the next lines.
    widths = [max(len(row[i]) for row in [*rows, TAIL_HEADER]) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]])
        for row in [TAIL_HEADER, *rows]
    ]
    console = out()
    if page and console.is_terminal and len(lines) > console.height:
        with console.pager(styles=True):
            _print_lines(console, lines, wide)
        return
    _print_lines(console, lines, wide)


TAIL_HEADER = ("pos", "time", "event", "by · what")


def _fit(line: str, width: int) -> str:
    """The line cut to ``width`` terminal cells, with an ellipsis when anything was cut."""
    if cell_len(line) <= width:
        return line
    kept, used = [], 0
    for char in line:
        used += get_character_cell_size(char)
        if used > width - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def _print_lines(console: Console, lines: list[str], wide: bool) -> None:
    for index, line in enumerate(lines):
        shown = line if wide else _fit(line, console.width)
        text = Text(shown, style="bold" if index == 0 else "")
        console.print(text, soft_wrap=not wide, no_wrap=not wide, crop=not wide)


@app.command("tail")
def events_tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many events to show.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    aggregate: Annotated[
        str | None, typer.Option(help="Only this aggregate's events (id or unique prefix).")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Only these types: Goal, Goal.DecisionRecorded or Granted; repeatable."
        ),
    ] = None,
    correlation: Annotated[
        str | None, typer.Option(help="Only events with this correlation id (a goal id).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only after this position or ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only up to this position or ISO time.")] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(help="With --follow: stop once this many events have been printed."),
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="Full ids, and summaries folded instead of cut.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The latest events, oldest first, one line each with short ids; --follow keeps printing
    new ones. More than a screenful goes through a pager when printing to a terminal.

    --json prints one event per line (JSON Lines), each as ``janus events show --json``.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        if lines < 0:
            raise BadInput("--lines must not be negative")
        if until is not None and follow:
            raise BadInput("--until and --follow contradict each other")
        topics = topics_for(kind) if kind else []
        ident = store.resolve_aggregate(aggregate) if aggregate else None
        raw, decoded = _filters(ident, correlation)
        after = store.position_of(parse_point(since, "--since"), "--since") if since else 0
        upto = store.position_of(parse_point(until, "--until"), "--until") if until else None
        head = store.head() if upto is None else upto
        if ident is not None:
            # One aggregate: its own events by index, not the log.
            shown = (
                [
                    logged
                    for n in store.table.events_of(ident, upto=head)
                    if n.id > after and (not topics or n.topic in topics) and raw(n)
                    for logged in [store.decode(n)]
                    if decoded(logged)
                ][-lines:]
                if lines
                else []
            )
        else:
            shown = _last_matching(store, lines, after, head, topics, raw, decoded)
        _print_events(shown, as_json, wide, page=not follow)
        if follow:
            try:
                _follow(
                    store,
                    max(head, after),
                    (topics, raw, decoded),
                    as_json,
                    wide,
                    stop_after,
                    len(shown),
                )
            except KeyboardInterrupt:
                return  # Ctrl-C is how a follow ends


def _follow(
    store: Store,
    position: int,
    filters: tuple[list[str], RawFilter, EventFilter],
    as_json: bool,
    wide: bool,
    stop_after: int | None,
    printed: int,
) -> None:
    """Poll the head; positions become visible in commit order, so none is ever skipped."""
    topics, raw, decoded = filters
    wake = threading.Event()
    interval = store.settings.poll_interval_seconds
    while stop_after is None or printed < stop_after:
        fresh: list[LoggedEvent] = []
        for batch in store.pages(position, None, topics):
            position = batch[-1].id
            fresh += [
                logged for logged in (store.decode(n) for n in batch if raw(n)) if decoded(logged)
            ]
        if stop_after is not None:
            fresh = fresh[: stop_after - printed]
        _print_events(fresh, as_json, wide)
        printed += len(fresh)
        if not fresh:
            wake.wait(interval)


# -- show ----------------------------------------------------------------------------------------


@app.command("show")
def events_show(
    ctx: typer.Context,
    event: Annotated[
        str, typer.Argument(help="A log position, or an event id (or unique prefix of one).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """One event in full: position, type, aggregate, provenance and every field.

    --json prints {"position", "event_id", "type", "topic", "aggregate_type", "aggregate_id",
    "aggregate_version", "timestamp", "command_id", "correlation_id", "causation_id", "actor",
    "node_id", "trace_context", "data"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        with progress_bar("searching the log", store.head()) as progress:
            logged = store.find_event(event, progress)
        body = event_json(logged)
    if as_json:
        print_json(body)
        return
    table = grid(f"#{body['position']} {body['type']}", "field", "value", fold=("value",))
    for key in (
        "event_id", "topic", "aggregate_id", "aggregate_version", "timestamp", "actor",
        "node_id", "command_id", "correlation_id", "causation_id",
    ):  # fmt: skip
        table.add_row(key, escape(str(body[key])))
    if body["trace_context"]:
        table.add_row("trace_context", escape(json.dumps(body["trace_context"])))
    for key, value in body["data"].items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(f"[bold]{key}[/]", escape(str(shown)))
    out().print(table)


# -- export and import ---------------------------------------------------------------------------


@app.command("export")
def events_export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write; gzip when the name ends in .gz.")],
    since: Annotated[
        str | None, typer.Option(help="Only events after this position or ISO time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only events up to this position or ISO time.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write the log (or a range of it) as JSON Lines: a header, one event per line, a trailer.

    The file appears only once complete; signed when JANUS_EXPORT_HMAC_KEY is set. --json
    prints {"file", "events", "after_position", "upto_position", "last_position", "signed"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        if file.exists() and not force:
            raise BadInput(f"{file} already exists (--force to overwrite)")
        after, note = _export_start(store, since)
        upto = store.position_of(parse_point(until, "--until"), "--until") if until else None
        total = (upto if upto is not None else store.head()) - after
        with progress_bar("exporting", total) as progress:
            result = export_events(store, file, after, upto, progress)
    if as_json:
        print_json(result.json())
        return
    if note:
        out().print(note)
    span = (
        f" (positions {result.after_position + 1}..{result.upto_position})" if result.events else ""
    )
    signed = ", signed" if result.signed else ""
    out().print(f"exported {result.events} events{span} to {file}{signed}")


def _export_start(store: Store, since: str | None) -> tuple[int, str | None]:
    """--since past the end of the log is an empty export (nothing is after it yet), said so."""
    if since is None:
        return 0, None
    point = parse_point(since, "--since")
    head = store.head()
    if isinstance(point, int) and point > head:
        return head, f"nothing after position {point}: the log ends at position {head}"
    return store.position_of(point, "--since"), None


@app.command("import")
def events_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by janus events export.")],
    check: Annotated[
        bool,
        typer.Option("--check", help="Check the file against this store; write nothing."),
    ] = False,
    require_signature: RequireSignature = False,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend",
            help="Let a signed, verified file add events to aggregates this store already holds.",
        ),
    ] = False,
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Check the whole file, then write all of it in one transaction, or nothing.

    Into an empty store: a restore, positions kept. Into a non-empty one: new aggregates only
    (--extend with a signed file for more), appended after the head. Events already present are
    skipped; a line whose aggregate version holds other contents is a conflict. Imported grants
    are history: they never execute here. The import is recorded as an ImportLog event. --json
    prints {"file", "sha256", "source_node", "mode", "signature", "events", "written",
    "already_present", "ignored", "grants_not_executed", "positions", "positions_kept",
    "checked_only", "problems"}.
    """
    with cli_errors(ctx, files=True), open_store() as store:
        total = export_size_hint(file)
        actor = operator(actor_name) if actor_name else None
        with progress_bar("checking", total) as progress:
            result = import_events(
                store,
                file,
                progress,
                check_only=check,
                actor=actor,
                require_signature=require_signature,
                extend=extend,
            )
    body: dict[str, Any] = result.json()
    if as_json:
        print_json(body)
    else:
        _print_import(result)
    if result.problems:
        raise typer.Exit(1)


def _print_import(result: Imported) -> None:
    if result.checked_only:
        out().print(
            f"checked {result.events} events from node {escape(result.header.source_node)} "
            f"({result.mode}, {result.signature}): {result.written} would be written, "
            f"{result.skipped} already present, {result.ignored} ignored, "
            f"{len(result.problems) + result.more_problems} refused"
        )
        for number, text in result.problems:
            out().print(f"  line {number}: {escape(text)}")
        return
    where = (
        f" at positions {result.first_position}..{result.last_position}"
        f"{' (kept)' if result.positions_kept else ' (renumbered)'}"
        if result.written
        else ""
    )
    out().print(
        f"imported {result.events} events from node {escape(result.header.source_node)} "
        f"({result.mode}, {result.signature}): {result.written} written{where}, "
        f"{result.skipped} already present, {result.ignored} ignored"
    )
    if result.grants:
        out().print(
            f"{result.grants} imported grant(s) are history: the executor here does not run them"
        )
