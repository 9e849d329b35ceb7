"""``janus edge``: start an edge and the cloud ingester as real processes; status; bad input."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adapters.nats_leaf import LocalNatsServer, hub_plan
from cli.main import app
from tests.servers import free_port, unique_name, wait_until
from tests.support.cli import assert_clean_failure
from tests.support.edge_procs import Proc, env_for


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def started() -> Iterator[Callable[[list[str], dict[str, str]], Proc]]:
    procs: list[Proc] = []

    def start(args: list[str], env: dict[str, str]) -> Proc:
        procs.append(Proc(args, env))
        return procs[-1]

    yield start
    for proc in reversed(procs):
        proc.stop()


def test_status_says_so_when_no_edge_has_synced(tmp_path: Path) -> None:
    env = env_for(tmp_path / "cloud")
    assert "no edge has synced yet" in cli(env, "edge", "status").stdout
    assert json.loads(cli(env, "edge", "status", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["edge", "start", "--hub", "http://hub:7422", "--node", "e1"], "nats-leaf://"),
        (["edge", "start", "--hub", "nats-leaf://hub:7422", "--node", "a.b"], "edge node id"),
        (["edge", "ingest"], "JANUS_NATS_URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], fragment: str) -> None:
    assert_clean_failure(cli(env_for(tmp_path / "x"), *args), fragment)


def test_edge_start_and_edge_ingest_bring_an_edge_goal_into_the_cloud(
    tmp_path: Path, started: Callable[[list[str], dict[str, str]], Proc]
) -> None:
    leaf_port = free_port()
    hub = LocalNatsServer(
        hub_plan(tmp_path / "hub", "127.0.0.1", free_port(), leaf_port), tmp_path / "hub"
    )
    hub.start()
    try:
        root = unique_name("r").replace("_", "")
        edge_env = env_for(tmp_path / "edge", JANUS_EDGE_SUBJECT_ROOT=root)
        edge = started(
            [
                "edge",
                "start",
                "--hub",
                f"nats-leaf://127.0.0.1:{leaf_port}",
                "--node",
                "e1",
                "--port",
                str(free_port()),
            ],
            edge_env,
        )
        wait_until(lambda: edge.printed("edge ready node=e1"), 60, message="the edge")
        goal = json.loads(cli(edge_env, "goals", "submit", "count the stock", "--json").stdout)

        cloud_env = env_for(
            tmp_path / "cloud",
            JANUS_NATS_URL=hub.url,
            JANUS_EDGE_SUBJECT_ROOT=root,
            JANUS_EDGE_HUB_STREAM=unique_name("edges"),
        )
        ingest = started(["edge", "ingest", "--node", "e1"], cloud_env)
        wait_until(lambda: ingest.printed("edge ingest ready"), 60, message="the ingester")

        def synced() -> bool:
            status = json.loads(cli(cloud_env, "edge", "status", "--json").stdout)
            return [(s["node"], s["link"], s["lag_events"]) for s in status] == [("e1", "up", 0)]

        wait_until(synced, 60, message="the edge's events in the cloud")
        shown = cli(cloud_env, "audit", "goal", goal["goal_id"], "--json")
        assert shown.exit_code == 0, shown.output
        assert "count the stock" in shown.stdout
    finally:
        hub.stop()
