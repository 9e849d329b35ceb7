"""Which projections there are, and whether a rebuild or verify of one is running or abandoned.

A build (projections/rebuild.py, projections/verify.py) registers itself in the projection's
generations row and holds a leader lock while it runs; the lock dies with its process, SIGKILL
included. A build that is registered but whose lock nobody holds is reported as abandoned until
the next build clears what it left.
"""

from __future__ import annotations

from dataclasses import replace

from projections.registry import Projections, Runner
from projections.runner import ProjectionRunner
from projections.status import ProjectionStatus

ABANDONED = "abandoned "


class UnknownProjection(LookupError):
    pass


def runner_for(projections: Projections, name: str) -> Runner:
    runners = projections.runners
    if name not in runners:
        known = ", ".join(sorted(runners))
        raise UnknownProjection(f"unknown projection {name!r} (known: {known})")
    return runners[name]


def sql_runner_for(projections: Projections, name: str) -> ProjectionRunner:
    """The SQL projection ``name``: the only kind rebuild and verify build (the knowledge views
    rebuild themselves, projections/knowledge.py)."""
    runner = runner_for(projections, name)
    if not isinstance(runner, ProjectionRunner):
        raise UnknownProjection(f"{name} is not a SQL projection")
    return runner


def projection_statuses(projections: Projections) -> list[ProjectionStatus]:
    """Each projection's status, with a build nobody is running any more called abandoned."""
    return [
        build_status(projections, runner)
        if isinstance(runner, ProjectionRunner)
        else runner.status()
        for runner in projections.runners.values()
    ]


def build_status(projections: Projections, runner: ProjectionRunner) -> ProjectionStatus:
    status = runner.status()
    if status.building is None or _build_running(projections, runner):
        return status
    purpose = status.building_purpose or "build"
    return replace(status, building_purpose=f"{ABANDONED}{purpose}")


def _build_running(projections: Projections, runner: ProjectionRunner) -> bool:
    """Whether a rebuild or verify holds the build lock right now (a probe: taken, let go)."""
    lock = projections.leader_lock(build_lock_name(runner))
    if not lock.try_acquire():
        return True
    lock.release()
    return False


def build_lock_name(runner: ProjectionRunner) -> str:
    return f"projection-build.{runner.name}"
