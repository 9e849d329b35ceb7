"""How views look in a terminal and as JSON; shared by the CLI and the demo."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def when(value: datetime | None) -> str:
    return aware(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


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
    return ident[:8]


def to_json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return aware(value).isoformat()
    return value


def goals_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Goals")
    for column in ("id", "text", "prio", "status", "latest action", "submitted"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        table.add_row(
            row["id"],
            escape(row["text"]),
            str(row["priority"]),
            row["status"],
            escape(row["latest_action"] or "-"),
            when(row["submitted_at"]),
        )
    return table


def confirmations_table(rows: Iterable[Mapping[str, Any]], now: datetime) -> Table:
    table = Table(title="Confirmations")
    for column in ("id", "goal", "action", "hazard", "status", "deadline", "time left"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        pending = row["status"] == "pending"
        table.add_row(
            row["id"],
            short(row["goal_id"]),
            escape(_action(row["action"], row["parameters"])),
            _hazard(row["hazard"]),
            row["status"],
            when(row["expires_at"]),
            time_left(row["expires_at"], now) if pending else "-",
        )
    return table


def effects_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Effects")
    for column in ("id", "goal", "action", "status", "try", "result / error", "updated"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        detail = row["error"] if row["error"] else json.dumps(row["result"] or {})
        table.add_row(
            row["id"],
            short(row["goal_id"]),
            escape(row["action"]),
            row["status"],
            str(row["attempt"]),
            escape(detail),
            when(row["updated_at"]),
        )
    return table


def jobs_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Jobs")
    columns = ("id", "name", "trigger", "policy", "status", "last scheduled", "fired/ok/fail/miss")
    for column in columns:
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        counts = (
            f"{row['fired_count']}/{row['succeeded_count']}/"
            f"{row['failed_count']}/{row['missed_count']}"
        )
        table.add_row(
            row["id"],
            escape(row["name"]),
            escape(trigger_text(row["trigger"])),
            row["misfire_policy"],
            row["status"],
            when(row["last_scheduled_for"]),
            counts,
        )
    return table


def fires_table(
    rows: Iterable[Mapping[str, Any]], phase: Mapping[str, str] | None = None
) -> Table:
    """``phase`` optionally labels each fire (by id) with the part of the story it belongs to."""
    table = Table(title="Fires")
    columns = ["scheduled for", "status", "try", "note"]
    if phase is not None:
        columns.insert(0, "when")
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [clock(row["scheduled_for"]), _status(row["status"]), str(row["attempt"])]
        cells.append(escape(row["error"] or ("manual" if row["manual"] else "")))
        if phase is not None:
            cells.insert(0, phase.get(row["id"], ""))
        table.add_row(*cells)
    return table


def _action(name: str, parameters: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in parameters.items())
    return f"{name}({args})"


def _hazard(hazard: str) -> str:
    colour = {"high": "bold red", "medium": "yellow"}.get(hazard, "green")
    return f"[{colour}]{hazard}[/]"


def _status(status: str) -> str:
    colour = {"succeeded": "green", "missed": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/]"
