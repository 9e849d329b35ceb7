"""Effect adapters tests bring instead of a real device (contract: test_effect_contract.py)."""

from __future__ import annotations

import threading
from typing import Any

from adapters.effects import EffectAdapter, EffectError, Known, Ledger, Lookup
from domain.actions import ActionSpec, HazardClass


class FlakyGate(EffectAdapter):
    """Fails with a retryable error a set number of times, then opens."""

    actions = frozenset({"open_gate"})

    def __init__(self, failures: int, retryable: bool = True) -> None:
        self.failures = failures
        self.retryable = retryable
        self.calls: list[str] = []

    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(key)
        if len(self.calls) <= self.failures:
            raise EffectError("gate controller timed out", retryable=self.retryable)
        return {"gate": "open"}

    def lookup(self, key: str) -> Lookup:
        return Lookup(Known.EXECUTED if key in self.calls else Known.NOT_EXECUTED)


class SlowGate(EffectAdapter):
    """Opens only when the test lets it: every fire of its job overlaps the one before."""

    actions = frozenset({"open_gate"})
    specs = (ActionSpec("open_gate", HazardClass.LOW, parameters={"type": "object"}),)

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.release = threading.Event()

    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        self.release.wait(60)
        self.ledger.append(key, action, parameters, {"gate": "open"})
        return {"gate": "open"}

    def lookup(self, key: str) -> Lookup:
        return Lookup(Known.EXECUTED if self.ledger.executions(key) else Known.NOT_EXECUTED)
