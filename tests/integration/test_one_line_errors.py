"""Settings out of range, files with numbers JSON cannot hold, and anything else a command lets
escape: one line on stderr and exit 1 (the traceback only with --debug)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.main import app
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind

AGENT = Invocation(Actor(ActorKind.AGENT, "planner"))


def _cli(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def _one_line(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    line: str = lines[0]
    return line


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("JANUS_DATABASE_URL", "postgresql://janus@127.0.0.1:99999/janus", "port"),
        ("JANUS_DATABASE_URL", "postgresql://janus@127.0.0.1:port/janus", "port"),
        ("JANUS_NATS_URL", "nats://127.0.0.1:65536", "port"),
        ("JANUS_CONFIRMATION_TTL_SECONDS", str(10**12), "confirmation_ttl_seconds"),
        ("JANUS_STREAM_MAX_BYTES", str(2**70), "stream_max_bytes"),
        ("JANUS_STREAM_DUPLICATE_WINDOW_SECONDS", str(30 * 24 * 3600), "DUPLICATE_WINDOW"),
    ],
)
def test_a_setting_out_of_range_is_one_clear_line(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**{variable.removeprefix("JANUS_").lower(): value})
    line = _one_line(_cli({"JANUS_HOME": str(tmp_path), variable: value}, "goals", "list"))
    assert named in line


def test_whatever_escapes_a_command_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {"JANUS_HOME": str(blocker / "home"), "JANUS_DATABASE_URL": ""}
    line = _one_line(_cli(env, "goals", "list"))
    assert "NotADirectoryError" in line and "--debug" in line
    debug = _cli(env, "--debug", "goals", "list")
    assert debug.exit_code == 1 and "Traceback" in debug.output


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_an_import_file_with_a_non_finite_number_is_refused_with_its_line(
    janus: Janus, settings: Settings, tmp_path: Path, number: str
) -> None:
    janus.commands.submit_goal(m.SubmitGoal(text="exported"), AGENT)
    janus.commands.submit_goal(m.SubmitGoal(text="exported too"), AGENT)
    env = {"JANUS_HOME": str(settings.home), "JANUS_DATABASE_URL": settings.database_url or ""}
    export = tmp_path / "export.jsonl"
    assert _cli(env, "events", "export", str(export)).exit_code == 0
    lines = export.read_text().splitlines()
    # Inside the event's state, where nothing converts the number on the way in.
    assert '"priority":5' in lines[2]
    lines[2] = lines[2].replace('"priority":5', f'"priority":{number}', 1)
    export.write_text("\n".join(lines) + "\n")

    fresh = {"JANUS_HOME": str(tmp_path / "fresh"), "JANUS_DATABASE_URL": ""}
    line = _one_line(_cli(fresh, "events", "import", str(export)))
    assert "line 3" in line and number.lstrip("-") in line
    check = _one_line(_cli(fresh, "events", "import", "--check", str(export)))
    assert "line 3" in check
