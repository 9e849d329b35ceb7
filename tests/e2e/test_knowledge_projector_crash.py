"""``janus project vector`` killed with SIGKILL while it embeds: the next start resumes from the
position stored in the collection, and the view ends with no duplicate or stray point and the
same payload digests as a fresh build of the same log."""

from __future__ import annotations

from pathlib import Path

from projections.vector import payload_digest
from tests.support.documents import ingest
from tests.support.knowledge import kill_projector_mid_run, knowledge_env, knowledge_janus

DOCUMENTS = 600
PARAGRAPH = "Paragraph {n} of document {d} says something about topic {t}. "


def text(d: int) -> str:
    return "\n\n".join(PARAGRAPH.format(n=n, d=d, t=(d * 7 + n) % 13) * 2 for n in range(6))


def env(home: Path) -> dict[str, str]:
    return knowledge_env(home)


def test_a_killed_vector_projector_resumes_without_duplicates(tmp_path: Path) -> None:
    home = tmp_path / "janus"
    with knowledge_janus(home) as janus:
        for d in range(DOCUMENTS):
            ingest(janus, text(d), f"file:///corpus/{d}.txt")
        head = janus.reader.head()
        vector = janus.knowledge_views["vector"]
        kill_projector_mid_run(vector, env(home), head, tmp_path / "projector.log")

        vector.catch_up(timeout=300)  # this process now holds the folder and resumes

        index = janus.knowledge.index
        live = index.alias_target("chunks") or ""
        resumed = {p.id: payload_digest(p.payload) for p in index.points(live)}
        assert index.count(live) == len(resumed)
        position, drift = vector.verify()
        assert position == head and drift.clean
        vector.rebuild()
        fresh = {
            p.id: payload_digest(p.payload)
            for p in index.points(index.alias_target("chunks") or "")
        }
        assert resumed == fresh
