"""The LeaderLock port's contract, run against every implementation (file and Postgres).

Each subclass provides ``make`` (a new lock object on one shared lock name) and ``lose`` (take
the lock away from its holder the way the world does: a deleted lock file, a terminated
database session), then inherits every test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.locks import FileLeaderLock, LeaderLock, LeadershipLost, PostgresLeaderLock
from tests.servers import unique_name, wait_until

Make = Callable[..., LeaderLock]
Lose = Callable[[LeaderLock], None]


class LeaderLockContract:
    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    @pytest.fixture
    def lose(self) -> Lose:
        raise NotImplementedError

    def test_only_one_holder_at_a_time(self, make: Make) -> None:
        first, second = make(), make()
        assert first.try_acquire() and first.held
        assert not second.try_acquire() and not second.held and second.term is None
        assert first.try_acquire(), "taking a lock one holds again is a no-op"

    def test_release_lets_the_next_holder_in(self, make: Make) -> None:
        first, second = make(), make()
        assert first.try_acquire()
        first.release()
        assert not first.held and first.term is None
        assert second.try_acquire()

    def test_every_holding_gets_a_larger_term(self, make: Make) -> None:
        first, second = make(), make()
        terms = []
        for lock in (first, second, first, second):
            assert lock.try_acquire()
            assert lock.fence() == lock.term
            terms.append(lock.term)
            lock.step_down()
        assert terms == sorted(terms) and len(set(terms)) == 4

    def test_a_lost_lock_is_not_held_and_refuses_to_fence(self, make: Make, lose: Lose) -> None:
        first, second = make(), make()
        assert first.try_acquire()
        lose(first)
        assert not first.held
        with pytest.raises(LeadershipLost):
            first.fence()
        assert second.try_acquire(), "a lost lock is free for the next holder"
        assert not first.try_acquire(), "and its old holder does not think it holds it"

    def test_an_earlier_term_is_over_once_its_holder_steps_down(
        self, make: Make, lose: Lose
    ) -> None:
        first, second = make(), make()
        assert first.try_acquire()
        old = first.term
        assert old is not None
        lose(first)  # the old holder may still be acting until it notices
        assert second.try_acquire()
        assert not second.term_over(old)
        first.step_down()
        assert second.term_over(old)

    def test_an_earlier_term_is_over_after_the_grace_period(self, make: Make, lose: Lose) -> None:
        first, second = make(), make(grace_seconds=1.0)
        assert first.try_acquire()
        old = first.term
        assert old is not None
        lose(first)
        assert second.try_acquire()
        assert not second.term_over(old)
        wait_until(lambda: second.term_over(old), timeout=5)

    def test_no_term_is_over_for_a_lock_not_held_and_ours_never_is(self, make: Make) -> None:
        first, second = make(), make()
        assert first.try_acquire()
        term = first.term
        assert term is not None
        assert not second.term_over(term - 1)
        assert not first.term_over(term) and not first.term_over(term + 1)


class TestFileLeaderLock(LeaderLockContract):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Make:
        path = tmp_path / "executor.lock"
        return lambda grace_seconds=60.0: FileLeaderLock(path, grace_seconds)

    @pytest.fixture
    def lose(self, tmp_path: Path) -> Lose:
        # The only way to take a flock from a live holder: delete its file.
        return lambda lock: (tmp_path / "executor.lock").unlink()

    def test_the_term_of_a_killed_holder_is_over_at_once(self, tmp_path: Path, make: Make) -> None:
        code = (
            "import time\nfrom pathlib import Path\nfrom adapters.locks import FileLeaderLock\n"
            f"lock = FileLeaderLock(Path({str(tmp_path / 'executor.lock')!r}))\n"
            "assert lock.try_acquire()\nprint(lock.term, flush=True)\ntime.sleep(60)\n"
        )
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        old = int(holder.stdout.readline())
        successor = make()
        assert not successor.try_acquire()
        holder.kill()
        holder.wait()
        wait_until(successor.try_acquire, timeout=10)
        assert successor.term_over(old)


def _terminate_lock_sessions(url: str) -> int:
    """pg_terminate_backend on every session of this database holding an advisory lock."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d"
            " ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.granted"
            " AND d.datname = current_database() AND l.pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


class TestPostgresLeaderLock(LeaderLockContract):
    @pytest.fixture
    def make(self, pg_url: str) -> Make:
        name = unique_name("lock")
        return lambda grace_seconds=60.0: PostgresLeaderLock(pg_url, name, 3, grace_seconds)

    @pytest.fixture
    def lose(self, pg_url: str) -> Lose:
        def terminate(lock: LeaderLock) -> None:
            assert _terminate_lock_sessions(pg_url) >= 1

        return terminate

    @pytest.fixture
    def read_only(self, pg_url: str) -> Iterator[Callable[[bool], None]]:
        dbname = pg_url.rsplit("/", 1)[1]

        def switch(on: bool) -> None:
            options = "-c default_transaction_read_only=off"
            with psycopg.connect(pg_url, autocommit=True, options=options) as admin:
                flag = "on" if on else "off"
                admin.execute(
                    f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = {flag}'
                )

        try:
            yield switch
        finally:
            switch(False)

    def test_a_read_only_database_gives_no_lock_and_keeps_no_session(
        self, make: Make, read_only: Callable[[bool], None]
    ) -> None:
        lock = make()
        read_only(True)
        with pytest.raises(psycopg.Error):
            lock.try_acquire()
        assert not lock.held
        read_only(False)
        assert make().try_acquire(), "the failed attempt left no session holding the lock"
