"""``janus projections``: how far each view is, and the operator's tools to repair one.

Mounted on ``janus`` as ``projections``; each command builds its own Janus from settings
(``JANUS_*``), so it works beside a running ``janus run`` as well as alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from adapters.role_status import read_roles
from bootstrap.container import Janus
from bootstrap.knowledge import KNOWLEDGE_VIEWS
from bootstrap.status import role_running
from cli import knowledge_views
from cli.common import BadInput, JsonFlag, cli_errors, fail, open_janus, out, print_json
from projections.rebuild import (
    ProgressCallback,
    VerifyReport,
    projection_statuses,
    rebuild,
    rich_progress,
    runner_for,
    verify,
)
from projections.runner import (
    ProjectionStatus,
    event_time,
    projection_positions,
)

app = typer.Typer(
    no_args_is_help=True,
    help="The views built from the event log: status, rebuild, verify, retry, skip.",
)

ProjectionName = Annotated[str, typer.Argument(help="The projection, e.g. relational.")]


class NotStalled(BadInput):
    """A skip for a position the projection is not stalled at."""


# -- plumbing ------------------------------------------------------------------------------------


@contextmanager
def _progress(description: str) -> Iterator[ProgressCallback | None]:
    """A progress bar for people; scripts and logs (stderr not a terminal) get none."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with rich_progress(console, description) as progress:
        yield progress


# -- status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayLag:
    """How far the relay has published the log (from its tracking row in the event store)."""

    name: str
    position: int
    head: int
    lag_seconds: float | None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "lag_seconds": self.lag_seconds,
        }


def relay_lag(janus: Janus) -> RelayLag | None:
    """The relay's progress, if a relay has ever recorded one on this store.

    The tracking name follows event_store/relay.py (``relay:<stream>``).
    """
    name = f"relay:{janus.settings.stream_name}"
    position = janus.app.tracked_position(name)
    if position == 0:
        return None
    head = janus.app.head()
    seconds = None
    if position >= head:
        seconds = 0.0
    else:
        published, newest = event_time(janus.reader, position), event_time(janus.reader, head)
        if published and newest:
            seconds = max(0.0, (newest - published).total_seconds())
    return RelayLag(name, position, head, seconds)


# A live projector moves a view that is behind within a poll or two; this long without a move
# means nobody is applying it.
STALE_SECONDS = 10.0


@dataclass(frozen=True)
class Liveness:
    """Whether some process is applying a view now (None: cannot tell), and since when not."""

    running: bool | None
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"running": self.running, "stopped_since": self.since}


def projector_liveness(janus: Janus, status: ProjectionStatus) -> Liveness:
    """Embedded, the views are applied by the runtime process (``janus serve`` or ``janus run``),
    which reports its ``projections`` role on the role board. With a server store a view that is
    behind and whose position has not moved for STALE_SECONDS has no projector; one at the head
    cannot be told apart."""
    moved = _last_moved(janus, status.name)
    if janus.settings.embedded:
        running = role_running(janus, "projections")
        return Liveness(running, None if running is not False else moved)
    if status.lag == 0 or moved is None:
        return Liveness(None)
    if (datetime.now(UTC) - moved).total_seconds() > STALE_SECONDS:
        return Liveness(False, moved)
    return Liveness(True)


def _last_moved(janus: Janus, name: str) -> datetime | None:
    query = select(projection_positions.c.updated_at).where(projection_positions.c.name == name)
    with janus.views_engine.connect() as conn:
        moved: datetime | None = conn.execute(query).scalar()
    if moved is None:
        return None
    return moved if moved.tzinfo else moved.replace(tzinfo=UTC)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Each view's version, generation, position, lag (events and seconds) and state: stopped
    since when if no process is applying it."""
    with cli_errors(), open_janus() as janus:
        statuses = projection_statuses(janus.projections)
        alive = {s.name: projector_liveness(janus, s) for s in statuses}
        relay = relay_lag(janus)
        roles = read_roles(janus.views_engine)
    if as_json:
        print_json(
            {
                "projections": [s.as_dict() | alive[s.name].as_dict() for s in statuses],
                "relay": relay.as_dict() if relay else None,
                "roles": [r.as_dict() for r in roles],
            }
        )
        return
    out().print(_status_table(statuses, relay, alive))
    for role in roles:
        # The runtime's roles as their processes last reported them (with a heartbeat).
        colour = "green" if role.ok else "bold red"
        out().print(f"[{colour}]{escape(role.role)}[/]: {escape(role.text)}")


def _status_table(
    statuses: list[ProjectionStatus], relay: RelayLag | None, alive: dict[str, Liveness]
) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("name", "version", "gen", "state", "position", "head", "lag", "lag s", "note"):
        right = column in ("version", "gen", "position", "head", "lag", "lag s")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "note")
    for s in statuses:
        table.add_row(
            s.name,
            _version(s),
            str(s.generation),
            _phase(s.phase, alive[s.name], s.lag),
            str(s.position),
            str(s.head),
            str(s.lag),
            _seconds(s.lag_seconds),
            escape(_note(s)),
        )
    if relay is not None:
        row = (relay.name, "", "", "", str(relay.position), str(relay.head), str(relay.lag))
        table.add_row(*row, _seconds(relay.lag_seconds), "")
    return table


def _version(s: ProjectionStatus) -> str:
    if s.code_version is None or s.code_version == s.version:
        return str(s.version)
    return f"{s.version}→{s.code_version}"


def _phase(phase: str, alive: Liveness, lag: int) -> str:
    if phase == "running" and alive.running is False:
        since = f" since {alive.since:%Y-%m-%d %H:%M:%S}Z" if alive.since else ""
        return f"[bold yellow]stopped{since}[/]"
    if phase == "running" and alive.running is None and lag == 0:
        phase = "caught up"
    colour = {"running": "green", "caught up": "green", "stalled": "bold red"}.get(phase, "yellow")
    return f"[{colour}]{phase}[/]"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _note(s: ProjectionStatus) -> str:
    notes = []
    if s.state == "stalled":
        notes.append(f"stalled at {s.error_position}: {s.error}")
    if s.building is not None:
        notes.append(f"{s.phase} generation {s.building} at {s.building_position}")
    if s.code_version is not None and s.code_version != s.version:
        notes.append(f"built by version {s.version}: rebuild to get version {s.code_version}")
    if s.skipped:
        notes.append(f"skipped {', '.join(map(str, s.skipped))}")
    if s.failed_documents:
        notes.append(f"{len(s.failed_documents)} documents failed (see --json)")
    return "; ".join(notes)


# -- repair --------------------------------------------------------------------------------------


@app.command("rebuild")
def rebuild_command(name: ProjectionName) -> None:
    """Rebuild a view from the event log beside the live one, then switch to it atomically.

    Readers keep the old view until the switch and see the complete new one after it.
    """
    if name in KNOWLEDGE_VIEWS:
        return knowledge_views.rebuild(name)
    with cli_errors(), open_janus() as janus:
        runner_for(janus.projections, name)
        with _progress(f"rebuilding {name}") as progress:
            result = rebuild(janus.projections, name, progress=progress)
    out().print(
        f"{name}: generation {result.generation} is live at position {result.position} "
        f"({result.events} events in {result.seconds:.1f}s, "
        f"{result.events_per_second:,.0f} events/s)"
    )


@app.command("verify")
def verify_command(name: ProjectionName, as_json: JsonFlag = False) -> None:
    """Build a view afresh from the log and compare it row by row with the live one.

    Exits 1 when they differ.
    """
    if name in KNOWLEDGE_VIEWS:
        return knowledge_views.verify(name, as_json)
    with cli_errors(), open_janus() as janus:
        runner_for(janus.projections, name)
        with _progress(f"verifying {name}") as progress:
            report = verify(janus.projections, name, progress=progress)
    if as_json:
        print_json(_report_json(report))
    elif not report.ok:
        out().print(_differences_table(report))
    else:
        out().print(report.summary())
    if not report.ok:
        fail(report.summary())


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "position": report.position,
        "ok": report.ok,
        "tables": [vars(t) for t in report.tables],
    }


def _differences_table(report: VerifyReport) -> Table:
    table = Table(
        title=f"{report.name} against a fresh build at position {report.position}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
    )
    for column in ("table", "live", "rebuilt", "missing", "extra", "changed", "examples"):
        table.add_column(column, overflow="fold" if column == "examples" else "ellipsis")
    for diff in report.differences():
        table.add_row(
            diff.table,
            str(diff.live_rows),
            str(diff.rebuilt_rows),
            str(diff.missing),
            str(diff.extra),
            str(diff.changed),
            escape("; ".join(diff.samples)),
        )
    return table


@app.command("retry")
def retry_command(name: ProjectionName) -> None:
    """Clear a stalled view's error and apply its events again now."""
    with cli_errors(), open_janus() as janus:
        runner = runner_for(janus.projections, name)
        runner.retry()
        position = runner.catch_up()
    out().print(f"{name}: running, at position {position}")


def _require_stalled_at(status: ProjectionStatus, position: int) -> None:
    if status.state != "stalled":
        raise NotStalled(
            f"{status.name} is not stalled (it is at position {status.position}): "
            "there is nothing to skip"
        )
    if status.error_position != position:
        raise NotStalled(
            f"{status.name} is stalled at position {status.error_position}, "
            f"not {position}: skip --position {status.error_position}"
        )


@app.command("skip")
def skip_command(
    name: ProjectionName,
    position: Annotated[
        int, typer.Option(help="The position the view is stalled at (see status); required.")
    ],
) -> None:
    """Step a stalled view over the event at --position; the skip is recorded (rebuilds honour
    it too)."""
    with cli_errors(), open_janus() as janus:
        runner = runner_for(janus.projections, name)
        _require_stalled_at(runner.status(), position)
        try:
            runner.skip(position)
        except ValueError as error:  # it recovered meanwhile (a retry in another process)
            raise NotStalled(str(error)) from error
    out().print(f"{name}: skipped the event at position {position}; the skip is recorded")
