"""Calling the CLI in-process (Typer's runner) and its common checks."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

from typer.testing import CliRunner, Result

from cli.main import app


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """Exit 1, one short line on stderr naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0]


def submit_goal(text: str = "unlock the front door") -> str:
    return str(as_json("goals", "submit", text)["goal_id"])


def pending_confirmation(action: str = "unlock_door", param: str = "door=front") -> str:
    goal_id = submit_goal()
    decided = as_json(
        "goals", "decide", goal_id, "--action", action, "--param", param, "--hazard", "high"
    )
    return str(decided["confirmation_id"])


def schedule_every(seconds: str = "60", *extra: str) -> str:
    return str(
        as_json("jobs", "schedule", f"job-{uuid4().hex[:6]}", "--every", seconds, *extra)["job_id"]
    )
