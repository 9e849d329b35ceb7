"""`janus audit goal ID --graph`: the goal's provenance from the embedded graph view, in each
format, and one line when there is none to show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from adapters.chunking import chunk_id
from adapters.extraction import PlainTextExtractor
from bootstrap.container import Janus
from bootstrap.knowledge import build_blob_store, chunk_spec
from bootstrap.settings import Settings
from commands import goal_flow
from commands import models as m
from commands.extraction import EntityExtraction
from tests.support.cli import assert_clean_failure, cli, ok
from tests.support.commands import as_alice
from tests.support.extraction import CountingEntityModel, build_graph_view, ingest_text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_GRAPH_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_HOME", str(tmp_path / "janus"))
    return tmp_path / "janus"


@pytest.fixture
def janus(home: Path) -> Iterator[Janus]:
    built = Janus.build(Settings(home=home))
    try:
        yield built
    finally:
        built.close()


def goal_with_context(janus: Janus) -> UUID:
    blobs = build_blob_store(janus.settings)
    doc = ingest_text(janus, blobs, "Acme Ltd made the front door lock.", "file:///lock.txt")
    goal = janus.commands.submit_goal(m.SubmitGoal(text="unlock the front door"), as_alice())
    goal_flow.decide(
        janus.commands,
        m.RecordDecision(
            goal_id=goal.aggregate_id,
            model="external",
            prompt="unlock?",
            context_ids=[str(chunk_id(doc, 0, janus.knowledge.embedder.digest))],
            raw_output="{}",
            action=m.Action(name="unlock_door", parameters={"door": "front"}),
        ),
        as_alice(),
    )
    return goal.aggregate_id


def build_graph(janus: Janus) -> None:
    blobs = build_blob_store(janus.settings)
    spec = chunk_spec(janus.settings)
    extraction = EntityExtraction(
        janus.app, janus.commands.runner, CountingEntityModel(), blobs, PlainTextExtractor(), spec
    )
    while extraction.run_once():
        pass
    build_graph_view(janus)
    janus.knowledge.graph.close()  # the embedded graph is opened by one process at a time


def test_audit_goal_graph_prints_json_mermaid_and_dot(janus: Janus) -> None:
    goal = goal_with_context(janus)
    build_graph(janus)

    body = json.loads(ok("audit", "goal", str(goal), "--graph").stdout)
    mermaid = ok("audit", "goal", str(goal)[:8], "--graph", "--format", "mermaid").stdout
    dot = ok("audit", "goal", str(goal), "--graph", "--format", "dot").stdout

    assert body["goal_id"] == str(goal)
    assert {n["label"] for n in body["nodes"]} >= {"Goal", "Decision", "Chunk", "Entity"}
    assert mermaid.startswith("flowchart LR") and "Entity: Acme Ltd (ORG)" in mermaid
    assert dot.startswith("digraph provenance {") and '[label="USED_CONTEXT"]' in dot


def test_audit_goal_graph_says_in_one_line_when_there_is_nothing_to_show(janus: Janus) -> None:
    goal = goal_with_context(janus)

    assert_clean_failure(cli("audit", "goal", str(goal), "--graph"), "not been built")
    build_graph(janus)
    other = janus.commands.submit_goal(m.SubmitGoal(text="later"), as_alice()).aggregate_id
    assert_clean_failure(cli("audit", "goal", str(other), "--graph"), "not in the graph view")
    # A format it does not know is a usage error, as Typer reports every one (exit 2).
    refused = cli("audit", "goal", str(goal), "--graph", "--format", "png")
    assert refused.exit_code == 2 and "'png' is not one of" in refused.output
