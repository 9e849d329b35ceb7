"""Fencing under a lost lock session: two `janus run` on one Postgres store never unlock twice.

The story of issue 10, break 1: the leader's advisory-lock session is terminated while it works
through a batch of grants. The standby takes the lock at once; the old leader must stop before
its next device call, and the new one must not ask the door lock about an effect the old term
started until that term is over. Ten rounds of a hundred grants, each round cut mid-batch; the
door lock's own ledger must hold every unlock exactly once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.effect import EffectStatus, effect_id_for
from domain.meta import Actor, ActorKind
from tests.e2e.procs import JanusProcess
from tests.servers import wait_until
from tests.support.commands import pending_confirmation

ROUNDS = 10
GRANTS_PER_ROUND = 100
DANA = Invocation(Actor(ActorKind.USER, "dana", role="approver"))


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "janus", database_url=pg_url, poll_interval_seconds=0.05, pool_size=6
    )


def advisory_key(name: str) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows the advisory lock of ``name``."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def terminate_lock_holder(url: str, lock_name: str) -> int:
    """pg_terminate_backend on the session holding the advisory lock; how many were ended."""
    classid, objid = advisory_key(lock_name)
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND classid = %s AND objid = %s AND objsubid = 1"
            # Advisory keys are per database: never end another database's (another test's) session.
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (classid, objid),
        ).fetchall()
    return len(rows)


def grant_all(janus: Janus, confirmations: list[UUID]) -> None:
    """Grant concurrently, so that they land close together and make one long batch."""
    grant = m.GrantConfirmation

    def one(confirmation_id: UUID) -> str:
        return janus.commands.grant_confirmation(
            grant(confirmation_id=confirmation_id), DANA
        ).outcome

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(one, confirmations)) == {"granted"}


def cut_mid_batch(
    janus: Janus, ledger: Ledger, batch: list[UUID], url: str, lock_name: str, round_: int
) -> int:
    """Grant a batch, cut the leader's lock session once some of it ran, wait for all of it."""
    keys = {str(c) for c in batch}

    def unlocked() -> bool:
        per_key = Counter(e.key for e in ledger.executions())
        twice = {key: n for key, n in per_key.items() if n > 1}
        assert not twice, f"round {round_}: unlocked more than once: {twice}"
        return keys <= set(per_key)

    before = len(ledger.executions())
    grant_all(janus, batch)
    # Mid-batch: some of this round's unlocks are done, most are not (a different point each
    # round).
    wait_until(
        lambda: len(ledger.executions()) - before >= 5 + round_ * 3,
        timeout=30,
        message=f"round {round_} under way",
    )
    cut = terminate_lock_holder(url, lock_name)
    wait_until(unlocked, timeout=60, message=f"round {round_} unlocked")
    return cut


def test_two_executors_never_unlock_twice_when_the_leaders_lock_session_is_cut(
    janus: Janus, settings: Settings, processes: list[JanusProcess], pg_url: str
) -> None:
    for _ in range(2):
        process = JanusProcess(settings)
        process.env["JANUS_POOL_SIZE"] = "3"  # the test server's connections are shared
        processes.append(process.start())
    ledger = Ledger(settings.home / "world" / "door_lock.sqlite")
    lock_name = f"{settings.app_name}:executor"

    def requested(count: int) -> list[UUID]:
        return [pending_confirmation(janus, ttl=600) for _ in range(count)]

    pending: list[UUID] = []
    cuts = 0
    with ThreadPoolExecutor(1) as preparing:
        upcoming = preparing.submit(requested, GRANTS_PER_ROUND)
        for round_ in range(ROUNDS):
            batch = upcoming.result()
            pending += batch
            if round_ + 1 < ROUNDS:  # the next round's confirmations, while this one runs
                upcoming = preparing.submit(requested, GRANTS_PER_ROUND)
            cuts += cut_mid_batch(janus, ledger, batch, pg_url, lock_name, round_)

    executions = ledger.executions()
    per_key = Counter(e.key for e in executions)
    twice = {key: n for key, n in per_key.items() if n > 1}
    assert not twice, f"unlocked more than once: {twice}"
    assert set(per_key) == {str(c) for c in pending}
    assert cuts >= ROUNDS, "every round cut the leader's lock session"
    assert len({e.pid for e in executions}) == 2, "both processes led at some point"

    def all_succeeded() -> bool:
        for confirmation_id in pending:
            effect = janus.app.repository.get(effect_id_for(confirmation_id))
            if effect.status is not EffectStatus.SUCCEEDED:
                return False
        return True

    wait_until(all_succeeded, timeout=60, interval=0.5, message="every effect recorded")
