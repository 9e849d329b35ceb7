"""``janus project graph`` killed with SIGKILL while it writes: the next start (in another process)
opens the embedded graph again, resumes from the position stored in the graph, and the view ends
with the same nodes and edges as a fresh build of the same log: no node or edge doubled, lost or
left stale by the batch the kill cut short."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import ok
from tests.support.documents import ingest
from tests.support.knowledge import kill_projector_mid_run, knowledge_env, knowledge_janus

DOCUMENTS = 300
# Capitalised names the rules extractor records as entities, shared across documents so entity
# nodes and their relations gather evidence from several batches.
NAMES = ["Acme Ltd", "Globex Corp", "Initech", "Umbrella Group", "Hooli", "Stark Works"]


def text(d: int) -> str:
    first, second = NAMES[d % len(NAMES)], NAMES[(d * 5 + 1) % len(NAMES)]
    return "\n\n".join(
        f"Paragraph {n} of report {d}: {first} supplies locks to {second} in district {n}."
        for n in range(5)
    )


def env(home: Path) -> dict[str, str]:
    return knowledge_env(home)


def test_a_killed_graph_projector_resumes_to_the_graph_a_fresh_build_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "janus"
    for name, value in env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JANUS_DATABASE_URL", raising=False)
    monkeypatch.setenv("JANUS_EXTRACTION_MODEL", "rules")
    with knowledge_janus(home) as janus:
        for d in range(DOCUMENTS):
            ingest(janus, text(d), f"file:///reports/{d}.txt")
        ok("extract")  # one EntitiesExtracted per document, recorded before the graph runs
        head = janus.reader.head()
        graph = janus.knowledge_views["graph"]
        kill_projector_mid_run(graph, env(home), head, tmp_path / "projector.log")

        graph.catch_up(timeout=300)  # this process opens the graph the killed one held

        store = janus.knowledge.graph
        resumed = store.export(graph.generations.live() or "")
        position, drift = graph.verify()
        assert position == head and drift.clean, drift
        graph.rebuild()
        fresh = store.export(graph.generations.live() or "")
        assert resumed.edges and any(n.label == "Entity" for n in resumed.nodes)
        assert resumed.nodes == fresh.nodes
        assert resumed.edges == fresh.edges
