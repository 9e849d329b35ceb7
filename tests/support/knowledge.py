"""An embedded Janus whose knowledge views use the fast hashing embedder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bootstrap.container import Janus
from bootstrap.settings import Settings
from projections.knowledge import KnowledgeRunner
from tests.servers import wait_until


def knowledge_settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "database_url": None,
        "embedding_model": "hashing",
        "chunk_size": 200,
        "chunk_overlap": 20,
        "agent_enabled": False,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@contextmanager
def knowledge_janus(home: Path, **overrides: object) -> Iterator[Janus]:
    janus = Janus.build(knowledge_settings(home, **overrides))
    for view in janus.knowledge_views.values():
        view.setup()
    try:
        yield janus
    finally:
        janus.close()


def kill_projector_mid_run(view: KnowledgeRunner, env: dict[str, str], head: int, log: Path) -> int:
    """Run ``janus project <view>`` in a process and SIGKILL it once it has stored a position
    short of ``head``: mid-way, most likely inside a batch it had partly written. The position
    it was killed at."""
    projector = subprocess.Popen(
        [sys.executable, "-m", "cli.project", view.name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )
    try:
        wait_until(lambda: 0 < view.position < head, timeout=120, interval=0.01)
    finally:
        os.killpg(projector.pid, signal.SIGKILL)
        projector.wait()
    killed_at = view.position
    assert killed_at < head, log.read_text()
    return killed_at


def knowledge_env(home: Path) -> dict[str, str]:
    """A ``janus`` process's environment matching ``knowledge_settings`` (no other JANUS_*)."""
    found = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    return found | {
        "JANUS_HOME": str(home),
        "JANUS_EMBEDDING_MODEL": "hashing",
        "JANUS_CHUNK_SIZE": "200",
        "JANUS_CHUNK_OVERLAP": "20",
        "JANUS_POLL_INTERVAL_SECONDS": "0.05",
        "JANUS_AGENT_ENABLED": "false",
        "JANUS_EXTRACTION_ENABLED": "false",
    }
