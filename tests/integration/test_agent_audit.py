"""The agent's decisions as the audit and replay commands show them (and re-decide them)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bootstrap.container import Janus
from cli.audit import app as audit_app
from cli.main import app
from cli.replay import app as replay_app
from tests.support.agent import make_agent, settle, submit


@pytest.fixture
def cli(janus: Janus, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("JANUS_HOME", str(janus.settings.home))
    if janus.settings.database_url:
        monkeypatch.setenv("JANUS_DATABASE_URL", janus.settings.database_url)
    else:
        monkeypatch.delenv("JANUS_DATABASE_URL", raising=False)
    root = typer.Typer()
    root.callback()(lambda: None)
    root.add_typer(audit_app, name="audit")
    root.add_typer(replay_app, name="replay")
    return root


def test_audit_and_replay_show_each_decisions_prompt_output_and_cost(
    janus: Janus, cli: typer.Typer
) -> None:
    goal_id = submit(janus, "lock the garage door")
    settle(janus, make_agent(janus))
    runner = CliRunner()
    audit = runner.invoke(cli, ["audit", "goal", str(goal_id)], env={"COLUMNS": "200"})
    assert audit.exit_code == 0, audit.output
    assert "step 1 · tokens in" in audit.output and "step 2 · tokens in" in audit.output
    assert "asked: Goal: lock the garage door" in audit.output
    assert 'answered: {"name": "lock_door", "parameters": {"door": "garage"}}' in audit.output
    assert "StepStarted" in audit.output
    steps = runner.invoke(cli, ["replay", "goal", str(goal_id), "--no-input"],
                          env={"COLUMNS": "200"})  # fmt: skip
    assert steps.exit_code == 0, steps.output
    assert "prompt (last turn)" in steps.output and "Result: succeeded" in steps.output
    redecided = runner.invoke(
        cli, ["replay", "decisions", "--goal", str(goal_id), "--model", "rules", "--json"]
    )
    assert redecided.exit_code == 0, redecided.output
    body = json.loads(redecided.stdout)
    assert body["total"] == 2


def test_goals_answer_records_the_operators_answer_and_refuses_when_nothing_was_asked(
    janus: Janus, cli: typer.Typer
) -> None:
    asked = submit(janus, "do the usual")
    quiet = submit(janus, "lock the back door")
    settle(janus, make_agent(janus))
    runner = CliRunner()
    answered = runner.invoke(app, ["goals", "answer", str(asked), "water the plants"])
    assert answered.exit_code == 0, answered.output
    assert "answered" in answered.output
    again = runner.invoke(app, ["goals", "answer", str(asked), "water the plants"])
    assert "already_answered" in again.output
    head = janus.app.head()
    refused = runner.invoke(app, ["goals", "answer", str(quiet), "yes"])
    assert refused.exit_code == 1 and "has no open question" in refused.output
    assert janus.app.head() == head
