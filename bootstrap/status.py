"""Which leader-locked roles (executor, scheduler) some process is running right now.

One function, ``runtime_status``, so that callers (a grant's answer, ``jobs fires``) do not care
how it is found out. Today: a role is running when its leader lock is held by someone, which a
non-blocking attempt to take it tells (and then gives back at once). Both lock kinds are released
by the operating system or the database when the holder dies, so a dead runtime reads as stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from bootstrap.container import Janus

EXECUTOR, SCHEDULER = "executor", "scheduler"


@dataclass(frozen=True)
class RuntimeStatus:
    """None: could not tell (the lock's store did not answer)."""

    executor_running: bool | None
    scheduler_running: bool | None


def role_running(janus: Janus, role: str) -> bool | None:
    lock = janus.leader_lock(role)
    try:
        free = lock.try_acquire()
    except (psycopg.Error, OSError):
        return None
    finally:
        lock.release()
        janus._locks.remove(lock)  # a probe, not a lock this Janus keeps
    return not free


def runtime_status(janus: Janus) -> RuntimeStatus:
    return RuntimeStatus(
        executor_running=role_running(janus, EXECUTOR),
        scheduler_running=role_running(janus, SCHEDULER),
    )


NO_EXECUTOR = "no executor is running: it runs when `janus run` or `janus serve` starts"
NO_SCHEDULER = "no scheduler is running: jobs fire only while `janus run` or `janus serve` runs"
