"""``janus keys``: create prints the key once, list never shows it, revoke is idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.keys import app
from commands.keys import KeyService


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    return tmp_path / "janus"


def authenticates(home: Path, token: str) -> bool:
    janus = Janus.build(Settings(home=home))
    try:
        return KeyService(janus.commands.runner).authenticate(token) is not None
    finally:
        janus.close()


def test_create_prints_a_working_key_once_and_list_never_shows_it(home: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["create", "ci-bot", "--role", "operator", "--json"])
    assert created.exit_code == 0, created.output
    issued = json.loads(created.output)
    assert issued["role"] == "operator" and issued["status"] == "active"
    assert authenticates(home, issued["key"])

    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0
    assert [k["name"] for k in json.loads(listed.output)] == ["ci-bot"]
    assert issued["key"] not in listed.output and "sha256" not in listed.output
    table = runner.invoke(app, ["list"])
    assert "ci-bot" in table.output and "active" in table.output


def test_revoke_by_name_stops_the_key_and_says_so_twice(home: Path) -> None:
    runner = CliRunner()
    token = runner.invoke(app, ["create", "temp", "--role", "viewer"]).output.splitlines()[0]
    first = runner.invoke(app, ["revoke", "temp", "--reason", "done"])
    assert first.exit_code == 0 and "revoked" in first.output
    again = runner.invoke(app, ["revoke", "temp"])
    assert again.exit_code == 0 and "already_revoked" in again.output
    assert not authenticates(home, token)


def test_bad_input_is_one_line_and_exit_code_one(home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["create", "dup", "--role", "viewer"]).exit_code == 0
    taken = runner.invoke(app, ["create", "dup", "--role", "admin"])
    assert taken.exit_code == 1 and "already exists" in taken.output
    bad = runner.invoke(app, ["create", "Not OK", "--role", "viewer"])
    assert bad.exit_code == 1 and "name" in bad.output
    missing = runner.invoke(app, ["revoke", "nobody"])
    assert missing.exit_code == 1 and "not-found" in missing.output
