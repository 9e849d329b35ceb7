"""How views look in a terminal and as JSON; shared by the CLI and the demo."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from pydantic import ValidationError
from rich import box
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import OperationalError as SqlOperationalError

from commands.errors import CommandError
from domain.errors import DomainError
from projections.runner import ProjectionStalled

# Rows as the views return them (SQLAlchemy RowMapping) or as plain dicts.
Row = Mapping[Any, Any]

SHORT_ID = 8


def error_text(error: Exception) -> str:
    """One line an operator can act on, for the errors commands and settings raise."""
    if isinstance(error, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
        )
        return f"invalid {error.title}: {fields}"
    if isinstance(error, CommandError | DomainError):
        return f"{error.code}: {error}"
    if isinstance(error, OperationalError | InterfaceError | SqlOperationalError):
        return f"store unavailable: {str(error).splitlines()[0]}"
    if isinstance(error, ProjectionStalled):
        return f"view stalled: {error}"
    if isinstance(error, TimeoutError):
        return f"timed out: {error}"
    return str(error)


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def when(value: datetime | None) -> str:
    """Compact enough for an 80-column table; the year is rarely in doubt."""
    return aware(value).strftime("%m-%d %H:%M") if value else "-"


def clock(value: datetime | None) -> str:
    """Time of day to the millisecond: enough to tell two-second fires apart."""
    return aware(value).strftime("%H:%M:%S.%f")[:-3] if value else "-"


def time_left(deadline: datetime, now: datetime) -> str:
    seconds = int((aware(deadline) - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s"


def trigger_text(trigger: Mapping[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "interval":
        return f"every {float(trigger['seconds']):g}s"
    if kind == "cron":
        return f"cron {trigger['expression']}"
    return f"at {trigger.get('run_at')}"


def short(ident: str) -> str:
    """Tables show ids like git shows hashes; commands accept any unique prefix."""
    return ident[:SHORT_ID]


def to_json(rows: Iterable[Row]) -> str:
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return aware(value).isoformat()
    return value


def _table(title: str, *columns: str, fold: tuple[str, ...] = ()) -> Table:
    """Borderless and unpadded at the edges so that tables fit 80 columns."""
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left"
    )
    for column in columns:
        if column in fold:
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True)
    return table


def goals_table(rows: Iterable[Row]) -> Table:
    table = _table(
        "Goals", "id", "text", "prio", "status", "latest action", "submitted", fold=("text",)
    )
    for row in rows:
        table.add_row(
            short(row["id"]),
            escape(row["text"]),
            str(row["priority"]),
            row["status"],
            escape(row["latest_action"] or "-"),
            when(row["submitted_at"]),
        )
    return table


def confirmations_table(rows: Iterable[Row], now: datetime) -> Table:
    columns = ("id", "goal", "action", "hazard", "status", "deadline", "time left")
    table = _table("Confirmations", *columns, fold=("action",))
    for row in rows:
        pending = row["status"] == "pending"
        table.add_row(
            short(row["id"]),
            short(row["goal_id"]),
            escape(_action(row["action"], row["parameters"])),
            _hazard(row["hazard"]),
            row["status"],
            when(row["expires_at"]),
            time_left(row["expires_at"], now) if pending else "-",
        )
    return table


def effects_table(rows: Iterable[Row]) -> Table:
    columns = ("id", "goal", "action", "status", "try", "outcome", "updated")
    table = _table("Effects", *columns, fold=("outcome",))
    for row in rows:
        detail = row["error"] or _pairs(row["result"] or {})
        table.add_row(
            short(row["id"]),
            short(row["goal_id"]),
            escape(row["action"]),
            row["status"],
            str(row["attempt"]),
            escape(detail),
            when(row["updated_at"]),
        )
    return table


def jobs_table(rows: Iterable[Row]) -> Table:
    columns = ("id", "name", "trigger", "policy", "status", "last scheduled", "runs")
    table = _table("Jobs", *columns, fold=("name", "trigger"))
    table.caption = "runs: fired/succeeded/failed/missed"
    for row in rows:
        counts = (
            f"{row['fired_count']}/{row['succeeded_count']}/"
            f"{row['failed_count']}/{row['missed_count']}"
        )
        table.add_row(
            short(row["id"]),
            escape(row["name"]),
            escape(trigger_text(row["trigger"])),
            row["misfire_policy"],
            row["status"],
            when(row["last_scheduled_for"]),
            counts,
        )
    return table


def fires_table(rows: Iterable[Row], phase: Mapping[str, str] | None = None) -> Table:
    """``phase`` optionally labels each fire (by id) with the part of the story it belongs to."""
    columns = ["scheduled for", "status", "try", "note"]
    if phase is not None:
        columns.insert(0, "when")
    table = _table("Fires", *columns, fold=("note",))
    for row in rows:
        cells = [clock(row["scheduled_for"]), _status(row["status"]), str(row["attempt"])]
        cells.append(escape(row["error"] or ("manual" if row["manual"] else "")))
        if phase is not None:
            cells.insert(0, phase.get(row["id"], ""))
        table.add_row(*cells)
    return table


def _action(name: str, parameters: Mapping[str, Any]) -> str:
    # Spaces, not call syntax, so that a narrow column wraps between words.
    return f"{name} {_pairs(parameters)}".strip()


def _pairs(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _hazard(hazard: str) -> str:
    colour = {"high": "bold red", "medium": "yellow"}.get(hazard, "green")
    return f"[{colour}]{hazard}[/]"


def _status(status: str) -> str:
    colour = {"succeeded": "green", "missed": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/]"
