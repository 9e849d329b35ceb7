"""The projection runner on both stores: order, positions, poison events, read-your-writes."""

from __future__ import annotations

from typing import ClassVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.engine import Connection

from bootstrap.container import Janus
from commands import models as m
from event_store.reader import LoggedEvent
from projections.runner import (
    Applied,
    ProjectionRunner,
    ProjectionStalled,
    SqlProjection,
    projection_positions,
)
from tests.servers import unique_name
from tests.support.commands import as_alice


class GoalTexts(SqlProjection):
    """A tiny view that refuses goals containing 'poison' until it is fixed."""

    version = 1
    fixed: ClassVar[bool] = False

    def __init__(self) -> None:
        self.name = unique_name("texts")
        self.metadata = MetaData()
        self.table = Table(
            self.name,
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("text", String(100)),
        )

    def process_event(self, event: LoggedEvent, conn: Connection) -> None:
        text = getattr(event.event, "text", None)
        if text is None:
            return
        if "poison" in text and not self.fixed:
            raise ValueError(f"cannot project {text!r}")
        conn.execute(insert(self.table).values(position=event.position, text=text))


def texts(runner: ProjectionRunner, projection: GoalTexts) -> list[str]:
    with runner.engine.connect() as conn:
        return [r.text for r in conn.execute(select(projection.table).order_by("position"))]


def a_runner(janus: Janus) -> tuple[ProjectionRunner, GoalTexts]:
    projection = GoalTexts()
    runner = ProjectionRunner(projection, janus.reader, janus.views_engine, batch_size=3)
    runner.setup()
    return runner, projection


def submit(janus: Janus, *texts_: str) -> int:
    position = 0
    for text in texts_:
        position = janus.commands.submit_goal(m.SubmitGoal(text=text), as_alice()).position
    return position


def test_events_are_applied_in_order_once_and_ignored_ones_advance(janus: Janus) -> None:
    runner, projection = a_runner(janus)
    submit(janus, "a", "b", "c", "d", "e")
    janus.commands.schedule_job(
        m.ScheduleJob(
            name="j",
            trigger={"kind": "interval", "seconds": 60},
            action={"name": "notify", "parameters": {"to": "ops"}},  # one the gate knows
        ),
        as_alice(),
    )
    assert runner.catch_up() == janus.app.head()
    assert runner.catch_up() == janus.app.head()
    assert texts(runner, projection) == ["a", "b", "c", "d", "e"]
    assert runner.status().lag == 0


def test_a_poison_event_stalls_only_that_projection_at_its_position(janus: Janus) -> None:
    runner, projection = a_runner(janus)
    submit(janus, "one", "two")
    poison_at = submit(janus, "poison pill")
    submit(janus, "three")
    with pytest.raises(ProjectionStalled, match="cannot project"):
        runner.catch_up()
    status = runner.status()
    assert (status.state, status.error_position) == ("stalled", poison_at)
    assert status.position == poison_at - 1
    assert texts(runner, projection) == ["one", "two"]
    assert janus.relational.catch_up() == janus.app.head()  # the others keep going

    projection.fixed = True
    runner.retry()
    runner.catch_up()
    assert texts(runner, projection) == ["one", "two", "poison pill", "three"]


def test_an_operator_can_skip_the_poison_event_and_it_is_recorded(janus: Janus) -> None:
    runner, projection = a_runner(janus)
    poison_at = submit(janus, "poison")
    submit(janus, "after")
    with pytest.raises(ProjectionStalled):
        runner.catch_up()
    with pytest.raises(ValueError, match="not stalled at position"):
        runner.skip(poison_at + 1)
    runner.skip(poison_at)
    runner.catch_up()
    assert texts(runner, projection) == ["after"]
    with runner.engine.connect() as conn:
        row = conn.execute(
            select(projection_positions).where(projection_positions.c.name == runner.name)
        ).one()
    assert row.skipped == f"{poison_at},"


def test_wait_for_returns_once_the_view_has_the_write(janus: Janus) -> None:
    runner, _ = a_runner(janus)
    position = submit(janus, "x")
    with pytest.raises(TimeoutError):
        runner.wait_for(position, timeout=0.05)
    runner.run_once()
    runner.wait_for(position, timeout=1)


def test_a_feed_that_redelivers_inside_one_batch_applies_each_event_once(janus: Janus) -> None:
    runner, projection = a_runner(janus)
    submit(janus, "a", "b", "c")
    first, second, third = janus.reader.read_after(0, limit=10)
    applied = runner.apply_batch([first, second, first, second, third, second])
    assert applied == 3
    assert texts(runner, projection) == ["a", "b", "c"]
    assert runner.status().position == third.id


def test_apply_says_where_the_stored_position_is_after_the_batch(janus: Janus) -> None:
    runner, projection = a_runner(janus)
    submit(janus, "a", "poison", "b")
    first, poison, last = janus.reader.read_after(0, limit=10)
    assert runner.apply([first]) == Applied(1, first.id)
    assert runner.apply([first]) == Applied(0, first.id)  # a redelivery changes nothing
    assert runner.apply([first, poison, last]) == Applied(0, first.id)  # stalled at the poison
    assert runner.apply([last]) == Applied(0, first.id)  # and held there
    projection.fixed = True
    runner.retry()
    assert runner.apply([poison, last]) == Applied(2, last.id)
    assert texts(runner, projection) == ["a", "poison", "b"]
