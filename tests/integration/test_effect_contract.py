"""The EffectAdapter port's contract, run against every implementation.

Each subclass provides ``adapter`` (a fresh adapter), the ``action`` and ``parameters`` of one
request it performs, and ``can_tell``: whether ``lookup`` knows what happened (a device with a
queryable log) or always answers UNKNOWN (fire-and-forget). A new adapter copies one subclass.
The executor, not the adapter, keeps a key from running twice (tests/integration/test_executor.py);
what the port promises is that repeating a request answers the same and that ``lookup`` never
claims something happened that did not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from adapters.effects import (
    EffectAdapter,
    EffectError,
    EffectRegistry,
    Known,
    Ledger,
    SimulatedDoorLock,
    SimulatedNotifier,
)
from tests.support.effects import FlakyGate, SlowGate


class EffectAdapterContract:
    action: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    can_tell: ClassVar[bool] = True

    @pytest.fixture
    def adapter(self) -> EffectAdapter:
        raise NotImplementedError

    def test_its_actions_are_in_the_catalogue_and_accept_the_request(
        self, adapter: EffectAdapter
    ) -> None:
        assert self.action in adapter.actions
        catalogue = EffectRegistry([adapter]).catalogue
        catalogue.check(self.action, self.parameters)  # raises InvalidAction when refused
        assert {spec.name for spec in adapter.action_specs()} == set(adapter.actions)

    def test_execute_answers_the_same_when_a_key_is_repeated(self, adapter: EffectAdapter) -> None:
        first = adapter.execute("key-1", self.action, dict(self.parameters))
        again = adapter.execute("key-1", self.action, dict(self.parameters))
        assert isinstance(first, dict)
        assert again == first

    def test_lookup_after_execute_says_it_happened_with_its_result(
        self, adapter: EffectAdapter
    ) -> None:
        result = adapter.execute("key-2", self.action, dict(self.parameters))
        found = adapter.lookup("key-2")
        if not self.can_tell:
            assert found.known is Known.UNKNOWN
            return
        assert found.known is Known.EXECUTED
        assert found.result in (None, result)

    def test_lookup_of_a_key_never_executed_never_claims_it_happened(
        self, adapter: EffectAdapter
    ) -> None:
        adapter.execute("key-3", self.action, dict(self.parameters))
        found = adapter.lookup("never-seen")
        expected = Known.NOT_EXECUTED if self.can_tell else Known.UNKNOWN
        assert (found.known, found.result) == (expected, None)


class TestSimulatedDoorLock(EffectAdapterContract):
    action = "unlock_door"
    parameters: ClassVar[dict[str, Any]] = {"door": "front"}

    @pytest.fixture
    def adapter(self, tmp_path: Path) -> EffectAdapter:
        return SimulatedDoorLock(Ledger(tmp_path / "door_lock.sqlite"))

    def test_a_door_that_does_not_respond_is_not_executed(self, adapter: EffectAdapter) -> None:
        with pytest.raises(EffectError, match="did not respond"):
            adapter.execute("key-j", "unlock_door", {"door": "jammed"})
        assert adapter.lookup("key-j").known is Known.NOT_EXECUTED


class TestSimulatedNotifier(EffectAdapterContract):
    action = "notify"
    parameters: ClassVar[dict[str, Any]] = {"to": "ops", "message": "the door is open"}
    can_tell = False

    @pytest.fixture
    def adapter(self, tmp_path: Path) -> EffectAdapter:
        return SimulatedNotifier(Ledger(tmp_path / "notifier.sqlite"))


class TestFlakyGate(EffectAdapterContract):
    """The test fake with no failures left behaves as a device that can tell."""

    action = "open_gate"
    parameters: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def adapter(self) -> EffectAdapter:
        return FlakyGate(failures=0)


class TestSlowGate(EffectAdapterContract):
    action = "open_gate"
    parameters: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def adapter(self, tmp_path: Path) -> EffectAdapter:
        gate = SlowGate(Ledger(tmp_path / "gate.sqlite"))
        gate.release.set()  # opened at once: the contract is about answers, not timing
        return gate
