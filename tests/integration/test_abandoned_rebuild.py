"""A rebuild killed with SIGKILL: status says so instead of "rebuilding" forever, and the next
rebuild clears what it left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from projections.rebuild import build_status, projection_statuses, rebuild

KILLED_MID_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from bootstrap.container import Janus
    from bootstrap.settings import Settings
    from projections.rebuild import rebuild

    janus = Janus.build(Settings(home=Path(sys.argv[1]), database_url=sys.argv[2] or None))

    def killed(done: int, total: int) -> None:
        if done > 0:
            os.kill(os.getpid(), signal.SIGKILL)

    rebuild(janus.projections, "relational", progress=killed, batch_size=2)
    """
)


def test_a_sigkilled_rebuild_is_reported_abandoned_and_the_next_one_finishes(
    janus: Janus,
) -> None:
    for i in range(6):
        janus.commands.submit_goal(
            m.SubmitGoal(text=f"goal {i}"), Invocation(Actor(ActorKind.USER, "a"))
        )
    janus.relational.catch_up()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [str(janus.settings.home), janus.settings.database_url or ""]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_BUILD, *args], env=env, capture_output=True, check=False
    )
    assert killed.returncode == -9, killed.stderr

    assert janus.relational.status().building is not None  # what the dead rebuild registered
    (status,) = [s for s in projection_statuses(janus.projections) if s.name == "relational"]
    assert status.phase == "abandoned rebuild"

    rebuild(janus.projections, "relational")
    status = build_status(janus.projections, janus.relational)
    assert (status.phase, status.building) == ("running", None)


def test_a_running_rebuild_is_not_called_abandoned(janus: Janus) -> None:
    janus.commands.submit_goal(m.SubmitGoal(text="one"), Invocation(Actor(ActorKind.USER, "a")))
    seen: list[str] = []

    def look(_done: int, _total: int) -> None:
        seen.append(build_status(janus.projections, janus.relational).phase)

    rebuild(janus.projections, "relational", progress=look, batch_size=1)
    assert seen and set(seen) == {"rebuilding"}
