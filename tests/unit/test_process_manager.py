"""The process-manager loop the agent and entity extraction share: the position moves only past a
batch that went through, a model that cannot run is a visible wait, and a lost lock ends the run."""

from __future__ import annotations

import threading
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import Notification

from adapters.llm import ModelUnavailable
from adapters.locks import FileLeaderLock
from commands.process_manager import ProcessManager, run_while_leader
from domain.goal import Goal
from domain.meta import CommandContext
from event_store.application import JanusApplication
from tests.servers import wait_until


class SwitchableModel:
    name = "switchable"

    def __init__(self) -> None:
        self.problem: str | None = None

    def check(self) -> None:
        if self.problem:
            raise ModelUnavailable(self.problem)


class Counting(ProcessManager[SwitchableModel]):
    name = "counting"
    kept = "notifications"

    def __init__(self, app: JanusApplication, model: SwitchableModel) -> None:
        super().__init__(app, model, batch_size=2)
        self.seen: list[int] = []
        self.closed = threading.Event()

    def handle(self, batch: list[Notification]) -> None:
        self.model.check()
        self.seen += [n.id for n in batch]

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def app(ctx: CommandContext) -> JanusApplication:
    app = JanusApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    for _ in range(3):
        app.save(Goal.submit(uuid4(), "water the plants", "alice", 5, ctx))
    return app


def test_the_position_moves_past_a_batch_only_once_it_went_through(app: JanusApplication) -> None:
    model = SwitchableModel()
    manager = Counting(app, model)
    model.problem = "no local model is installed"

    with pytest.raises(ModelUnavailable):
        manager.run_once()

    assert manager.position == 0
    assert manager.status()["state"] == "waiting: no local model is installed"
    assert manager.status()["lag"] == 3

    model.problem = None
    assert manager.run_once() == 2
    assert manager.run_once() == 1
    assert manager.run_once() == 0

    assert manager.seen == [1, 2, 3]
    assert manager.status() == {
        "model": "switchable",
        "state": "running",
        "position": 3,
        "head": 3,
        "lag": 0,
    }


def test_a_manager_that_loses_its_lock_stops_closes_and_lets_go(
    app: JanusApplication, tmp_path: Path
) -> None:
    lock = FileLeaderLock(tmp_path / "counting.lock")
    manager = Counting(app, SwitchableModel())
    stop = threading.Event()
    runner = threading.Thread(target=run_while_leader, args=(lock, lambda: manager, stop, 0.01))
    runner.start()
    try:
        wait_until(lambda: manager.position == 3, timeout=10)
        (tmp_path / "counting.lock").unlink()  # another holder may take a new lock file now

        runner.join(timeout=10)

        assert not runner.is_alive()
        assert manager.closed.is_set()
        assert not lock.held
        assert not stop.is_set()
    finally:
        stop.set()
        runner.join(timeout=10)
