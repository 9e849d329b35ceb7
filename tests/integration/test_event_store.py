"""The event store contract, identical on SQLite and Postgres."""

from __future__ import annotations

from uuid import uuid4

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.document import Document, content_key
from domain.goal import DEFAULT_PRIORITY, Decision, Goal
from domain.meta import Actor, ActorKind, CommandContext

ALICE = Invocation(Actor(ActorKind.USER, "alice"), trace_context={"traceparent": "00-abc-def-01"})


def test_events_carry_provenance_end_to_end(janus: Janus) -> None:
    result = janus.commands.submit_goal(m.SubmitGoal(text="unlock the front door"), ALICE)
    [logged] = list(janus.reader.iterate())
    meta = logged.event.meta
    assert logged.position == result.position
    assert meta.correlation_id == str(result.aggregate_id)
    assert meta.causation_id == meta.command_id
    assert str(meta.actor) == "user:alice"
    assert meta.node_id == janus.settings.node_id
    assert meta.trace_context == {"traceparent": "00-abc-def-01"}
    assert logged.event.timestamp.tzinfo is not None


def test_reader_pages_in_order_after_a_position(janus: Janus) -> None:
    positions = [
        janus.commands.submit_goal(m.SubmitGoal(text=f"goal {i}"), ALICE).position for i in range(7)
    ]
    assert janus.reader.head() == positions[-1]
    page = janus.reader.read_after(positions[2], limit=3)
    assert [n.id for n in page] == positions[3:6]
    assert [e.position for e in janus.reader.iterate(after=0, batch=2)] == positions
    assert janus.reader.read_after(positions[-1], limit=10) == []


def test_goal_submitted_before_priority_existed_reads_with_the_default(janus: Janus) -> None:
    """A v1 Goal.Submitted (no priority, no class_version) stored by an old release."""
    goal_id = uuid4()
    modern = Goal.submit(goal_id, "old goal", "alice", 7, _ctx())
    [event] = modern.collect_events()
    stored = janus.app.mapper.to_stored_event(event)
    transcoder = janus.app.mapper.transcoder
    state = transcoder.decode(stored.state)
    del state["priority"]
    del state["class_version"]
    old = StoredEvent(
        originator_id=goal_id,
        originator_version=1,
        topic=get_topic(Goal.Submitted),
        state=transcoder.encode(state),
    )
    janus.app.recorder.insert_events([old])

    goal = janus.app.repository.get(goal_id)
    assert goal.priority == DEFAULT_PRIORITY
    assert goal.text == "old goal"


def _ctx():  # type: ignore[no-untyped-def]
    return CommandContext("c", "g", "c", Actor(ActorKind.USER, "alice"), "old-node")


def test_a_decision_recorded_before_rationale_existed_reads_with_none_given(janus: Janus) -> None:
    """A v1 Goal.DecisionRecorded (no rationale, no class_version) stored by an old release."""
    goal_id = uuid4()
    goal = Goal.submit(goal_id, "old goal", "alice", 5, _ctx())
    decision = Decision(uuid4(), "scripted", "", {}, "p", [], "o", {"name": "notify"}, {})
    goal.record_decision(decision, _ctx())
    submitted, decided = goal.collect_events()
    transcoder = janus.app.mapper.transcoder
    stored = [janus.app.mapper.to_stored_event(e) for e in (submitted, decided)]
    state = transcoder.decode(stored[1].state)
    del state["rationale"]
    del state["class_version"]
    old = StoredEvent(
        originator_id=goal_id,
        originator_version=2,
        topic=get_topic(Goal.DecisionRecorded),
        state=transcoder.encode(state),
    )
    janus.app.recorder.insert_events([stored[0], old])

    loaded: Goal = janus.app.repository.get(goal_id)
    assert [(d.decision_id, d.rationale) for d in loaded.decisions] == [(decision.decision_id, "")]


def test_a_decision_recorded_before_agent_steps_existed_reads_with_defaults(
    janus: Janus,
) -> None:
    """A v1 Goal.DecisionRecorded (no step, usage, context position or runtime)."""

    goal = Goal.submit(uuid4(), "old goal", "alice", 5, _ctx())
    decision = Decision(uuid4(), "scripted", "", {}, "p", [], "{}", {"name": "notify"}, {})
    goal.record_decision(decision, _ctx())
    submitted, recorded = goal.collect_events()
    janus.app.recorder.insert_events([janus.app.mapper.to_stored_event(submitted)])
    stored = janus.app.mapper.to_stored_event(recorded)
    transcoder = janus.app.mapper.transcoder
    state = transcoder.decode(stored.state)
    for field in ("step", "usage", "context_position", "runtime", "class_version"):
        del state[field]
    del state["rationale"]
    old = StoredEvent(goal.id, 2, get_topic(Goal.DecisionRecorded), transcoder.encode(state))
    janus.app.recorder.insert_events([old])

    (read,) = janus.app.repository.get(goal.id).decisions
    assert (read.step, read.usage, read.context_position, read.runtime) == (0, {}, 0, {})
    assert read.action == {"name": "notify"}


def test_a_document_registered_before_titles_and_blob_keys_reads_with_both(janus: Janus) -> None:
    """A v1 Document.Registered (no title, no blob key) stored by an old release: its bytes were
    stored at their content address, and its title is its source's last segment."""
    document_id, sha = uuid4(), "c" * 64
    modern = Document.register(
        document_id, "s3://inbox/notes/door.md", "x", "text/markdown", sha, 3, "k", _ctx()
    )
    [event] = modern.collect_events()
    stored = janus.app.mapper.to_stored_event(event)
    transcoder = janus.app.mapper.transcoder
    state = transcoder.decode(stored.state)
    for field in ("title", "blob_key", "class_version"):
        del state[field]
    old = StoredEvent(
        originator_id=document_id,
        originator_version=1,
        topic=get_topic(Document.Registered),
        state=transcoder.encode(state),
    )
    janus.app.recorder.insert_events([old])

    document = janus.app.repository.get(document_id)
    assert (document.title, document.blob_key) == ("door.md", content_key(sha))
    janus.relational.catch_up()
    [row] = janus.views.documents()
    assert row["blob_key"] == content_key(sha)
