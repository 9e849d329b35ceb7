"""Which leader-locked roles (executor, scheduler) some process is running right now.

One function, ``runtime_status``, so that callers (a grant's answer, ``jobs fires``) do not care
how it is found out: from the role board every runtime process keeps with a heartbeat
(``adapters/role_status.py``). A role runs while some process says ``running`` and its heartbeat
is fresh; a killed process stops refreshing its row, so a dead runtime soon reads as stopped.
Reading the board never touches the leader locks (a probe would start a leadership term).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from adapters.role_status import read_roles
from bootstrap.container import Janus

EXECUTOR, SCHEDULER = "executor", "scheduler"


@dataclass(frozen=True)
class RuntimeStatus:
    """None: could not tell (the lock's store did not answer)."""

    executor_running: bool | None
    scheduler_running: bool | None


def role_running(janus: Janus, role: str) -> bool | None:
    try:
        summaries = {summary.role: summary for summary in read_roles(janus.views_engine)}
    except SQLAlchemyError:
        return None  # the views store did not answer: cannot tell
    found = summaries.get(role)
    return found is not None and found.state == "running"


def runtime_status(janus: Janus) -> RuntimeStatus:
    return RuntimeStatus(
        executor_running=role_running(janus, EXECUTOR),
        scheduler_running=role_running(janus, SCHEDULER),
    )


NO_EXECUTOR = "no executor is running: it runs when `janus run` or `janus serve` starts"
NO_SCHEDULER = "no scheduler is running: jobs fire only while `janus run` or `janus serve` runs"
