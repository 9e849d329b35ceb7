"""What every ``janus`` command shares: the one error boundary, ``fail``, the flags and the store.

An error an operator can act on (bad input, a domain or command refusal, a store or view that is
down, a stalled view) is one red line on stderr and exit code 1, Ctrl-C is one line and exit 130;
``janus --debug`` (or ``--debug`` on a command group) adds the traceback. Anything else escaping
a command is a bug: the root group (``Boundary``) still reports it as one line, with a hint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Table as SqlTable
from sqlalchemy import select
from sqlalchemy.exc import OperationalError as SqlOperationalError
from sqlalchemy.exc import SQLAlchemyError
from typer._click.exceptions import ClickException  # typer vendors Click
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from adapters.llm import ModelUnavailable
from bootstrap.container import Janus
from bootstrap.history import open_store as open_history
from bootstrap.settings import Settings
from commands import models as m
from commands.errors import CommandError, NotFound
from commands.invocation import CommandResult, Invocation
from domain.errors import DomainError
from domain.meta import Actor, ActorKind
from projections.rebuild import ProjectionBusy, RebuildFailed, UnknownProjection
from projections.runner import ProjectionStalled
from replay import render
from replay.exchange import ExchangeError

# The one bad-input error: the history library raises it for the values it parses (points in
# time, positions), the commands for their own options.
from replay.store import ProgressFn, Store, UnreadableEvent
from replay.values import BadInput, aware

# Only the re-exported name needs listing (mypy checks re-exports); what is defined here is public.
__all__ = ["BadInput"]

EXIT_INTERRUPTED = 130
PROGRESS_THRESHOLD = 5_000
MIN_PREFIX = 4
HEX_DIGITS = frozenset("0123456789abcdef-")

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
    TimeoutError,
    ProjectionStalled,
    UnknownProjection,
    ProjectionBusy,
    RebuildFailed,
)

# -- flags ---------------------------------------------------------------------------------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RequireSignature = Annotated[
    bool,
    typer.Option(
        "--require-signature",
        help="Refuse a file whose signature JANUS_EXPORT_HMAC_KEY does not verify.",
    ),
]
ActorName = Annotated[
    str | None, typer.Option("--as", help="Who is acting (default: $USER, else 'operator').")
]
DebugFlag = Annotated[
    bool, typer.Option("--debug", help="Show the full traceback when the command fails.")
]
ScanFlag = Annotated[
    bool, typer.Option("--scan", help="Ignore the views and scan the log (slower, same answer).")
]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="Repeat the command safely: the same key replays the first answer."),
]
Params = Annotated[
    list[str] | None,
    typer.Option("--param", help="An action parameter as key=value (string); repeatable."),
]


# -- output and errors ---------------------------------------------------------------------------


def out() -> Console:
    # Built per call so that colour and width follow whatever stdout is right now.
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def fail(message: str, code: int = 1) -> NoReturn:
    """One red line on stderr, then exit (1 unless told)."""
    err().print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)
    raise typer.Exit(code) from None


def debug_requested(ctx: typer.Context | None = None) -> bool:
    """``--debug`` given to ``janus`` (or to a group), wherever the running command is mounted."""
    current: Any = ctx or get_current_context(silent=True)
    while current is not None:
        if current.params.get("debug"):
            return True
        current = current.parent
    return False


def error_text(error: BaseException) -> str:
    """The first line of what an operator needs to know about an error."""
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    elif isinstance(error, ModelUnavailable):
        text = f"no model: {error}"
    elif isinstance(error, SQLAlchemyError) and not isinstance(error, SqlOperationalError):
        text = f"views unavailable: {error}"
    elif isinstance(error, PersistenceError) and not isinstance(
        error, OperationalError | InterfaceError
    ):
        text = f"store unavailable: {error}"
    elif isinstance(error, Exception):
        text = render.error_text(error)
    else:
        text = str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _report(ctx: typer.Context | None, message: str, code: int = 1) -> NoReturn:
    # Called inside an except block, so the traceback printed is the one being handled.
    if debug_requested(ctx):
        err().print_exception()
    fail(message, code)


@contextmanager
def cli_errors(ctx: typer.Context | None = None, *, files: bool = False) -> Iterator[None]:
    """The error boundary: what an operator can act on is one red line and exit 1; Ctrl-C one
    line and exit 130. Anything else propagates to the root group's last resort (``Boundary``).

    ``files``: the command reads or writes a file the operator named (export, import, a scratch
    database), so a failing file operation is theirs to fix (``PATH: reason``). Elsewhere an
    OSError is the environment's (an unusable home) and reaches the last resort with its type.
    """
    try:
        yield
    except KeyboardInterrupt:
        _report(ctx, "interrupted", EXIT_INTERRUPTED)
    except USER_ERRORS as error:
        _report(ctx, error_text(error))
    except OSError as error:
        if not files:
            raise
        _report(ctx, error_text(error))


class Boundary(TyperGroup):
    """The root group: the same boundary around every command, and a last resort for what a
    command let escape (a setting out of range found late, a bug): one line with a hint, exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with cli_errors(ctx):
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise  # Click's own ways out: an exit code, Ctrl-C, a usage error
        except Exception as error:  # noqa: BLE001 - reported, then exit 1: never swallowed
            known = render.error_text(error)
            line = (known if known != str(error) else f"{type(error).__name__}: {error}").strip()
            hint = "" if debug_requested(ctx) else " (--debug shows the traceback)"
            _report(ctx, f"{line.splitlines()[0] if line else type(error).__name__}{hint}")


# -- the store -----------------------------------------------------------------------------------


@contextmanager
def open_janus() -> Iterator[Janus]:
    """A Janus for one command, built from settings (``JANUS_*``), closed when it is done."""
    janus = Janus.for_cli(Settings())
    try:
        yield janus
    finally:
        janus.close()


@contextmanager
def open_store(scan: bool = False) -> Iterator[Store]:
    store = open_history(Settings(), use_views=not scan)
    try:
        yield store
    finally:
        store.close()


def export_size_hint(file: Path) -> int:
    """A progress total from an export's size (about 700 bytes an event); only for the bar."""
    try:
        return file.stat().st_size // 700
    except OSError:
        return 0


def fresh(janus: Janus) -> None:
    """Reads come from the views: bring the embedded view up to the log's head first."""
    janus.relational.catch_up()


def operator(actor_name: str | None = None, role: str | None = None) -> Actor:
    """The person at the terminal, checked where the name enters (every view stores it)."""
    name = m.actor_name(actor_name or os.environ.get("USER") or "operator")
    return Actor(ActorKind.USER, name, role=role)


def invocation(
    actor_name: str | None = None, key: str | None = None, role: str | None = None
) -> Invocation:
    checked = m.idempotency_key(key) if key is not None else None
    return Invocation(operator(actor_name, role), idempotency_key=checked)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {pair!r} is not key=value")
        params[key.strip()] = value
    return params


def resolve(janus: Janus, table: SqlTable, value: str) -> UUID:
    """A full id, or a unique prefix of one as the tables show them (as git does with hashes)."""
    kind = str(table.name).removesuffix("s")
    with suppress(ValueError):
        return UUID(value)
    prefix = value.lower()
    if len(prefix) < MIN_PREFIX or not set(prefix) <= HEX_DIGITS:
        raise BadInput(f"{kind} id {value!r} is neither a UUID nor a prefix of one")
    fresh(janus)
    with janus.views_engine.connect() as conn:
        query = select(table.c.id).where(table.c.id.startswith(prefix, autoescape=True)).limit(2)
        matches = list(conn.execute(query).scalars())
    if not matches:
        raise NotFound(kind, f"{value}…")
    if len(matches) > 1:
        raise BadInput(f"{kind} id prefix {value!r} is ambiguous: give more characters")
    return UUID(matches[0])


def print_outcome(kind: str, result: CommandResult) -> None:
    replayed = " (replayed)" if result.replayed else ""
    out().print(f"{kind} {result.aggregate_id}: {result.outcome}{replayed}")


def print_written(kind: str, result: CommandResult, as_json: bool) -> None:
    """What scripts need from a create: the new id, and the position to wait on."""
    if as_json:
        ident = str(result.aggregate_id)
        print_json({f"{kind}_id": ident, "position": result.position, "outcome": result.outcome})
        return
    out().print(f"{kind} {result.aggregate_id} {result.outcome} at position {result.position}")


# -- long work and tables ------------------------------------------------------------------------


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


def action_text(action: Any) -> str:
    if not isinstance(action, dict):
        return str(action)
    params = " ".join(f"{k}={v}" for k, v in (action.get("parameters") or {}).items())
    return f"{action.get('name')} {params}".strip()
