"""/readyz and `janus projections status` report a runtime role that is not running."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from adapters.role_status import RoleBoard, RoleState
from bootstrap.container import Janus
from cli.main import app as cli
from tests.servers import wait_until
from tests.support.api import serve_api


def test_readyz_fails_while_a_role_is_failing_and_names_the_reason(janus: Janus) -> None:
    board = RoleBoard(janus.views_engine, "node:host:1", heartbeat_seconds=60)
    since = datetime.now(UTC)
    board.write({"executor": RoleState("running", "term 1", since)})
    with serve_api(janus) as api:
        ready = api.client.get("/readyz")
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert ready.status_code == 200 and checks["role:executor"]["ok"] is True

        board.write({"executor": RoleState("failing", "OperationalError: refused", since)})
        ready = api.client.get("/readyz")
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert ready.status_code == 503
        assert checks["role:executor"]["detail"].endswith("OperationalError: refused")


def test_a_role_whose_heartbeat_stopped_shows_as_stopped_in_projections_status(
    janus: Janus, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = RoleBoard(janus.views_engine, "node:host:2", heartbeat_seconds=0.05)
    board.write({"scheduler": RoleState("running", None, datetime.now(UTC))})
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(janus.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    if janus.settings.database_url:
        monkeypatch.setenv("JANUS_DATABASE_URL", janus.settings.database_url)

    def status_says_stopped() -> bool:
        out = CliRunner().invoke(cli, ["projections", "status"])
        assert out.exit_code == 0, out.output
        return "scheduler: stopped since" in out.output

    wait_until(status_says_stopped, timeout=10, interval=0.2)
