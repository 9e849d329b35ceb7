"""Effect adapters: the only code that touches the world for a granted action.

The port asks two things of an adapter: do it (under an idempotency key), and, after a crash,
say whether it was done. An adapter that cannot tell must say so; Janus then never guesses.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from domain.actions import ActionCatalogue, ActionSpec, HazardClass


class EffectError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Known(StrEnum):
    EXECUTED = "executed"
    NOT_EXECUTED = "not_executed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Lookup:
    known: Known
    result: dict[str, Any] | None = None


class EffectAdapter(ABC):
    """``specs`` register the adapter's actions in the catalogue (name, parameters, hazard).

    An adapter that only lists ``actions`` gets the cautious default for each: high hazard,
    any parameters.
    """

    actions: frozenset[str] = frozenset()
    specs: tuple[ActionSpec, ...] = ()

    def action_specs(self) -> tuple[ActionSpec, ...]:
        named = {spec.name for spec in self.specs}
        cautious = tuple(
            ActionSpec(name, HazardClass.HIGH, parameters={"type": "object"})
            for name in sorted(self.actions - named)
        )
        return self.specs + cautious

    @abstractmethod
    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Perform the action. Raise EffectError when it did not happen."""

    @abstractmethod
    def lookup(self, key: str) -> Lookup:
        """Whether the action with this key happened; UNKNOWN when the adapter cannot tell."""


@dataclass(frozen=True)
class Execution:
    key: str
    action: str
    parameters: dict[str, Any]
    result: dict[str, Any]
    pid: int
    at: str


class Ledger:
    """A durable, append-only record of real executions, in its own SQLite file.

    It deliberately does not deduplicate: it plays the world, and the world does not know about
    idempotency keys. Tests count rows to prove an action ran exactly once across processes.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS executions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " key TEXT NOT NULL, action TEXT NOT NULL, parameters TEXT NOT NULL,"
                " result TEXT NOT NULL, pid INTEGER NOT NULL, at TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS executions_key ON executions (key)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def append(
        self, key: str, action: str, parameters: dict[str, Any], result: dict[str, Any]
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO executions (key, action, parameters, result, pid, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    action,
                    json.dumps(parameters, sort_keys=True),
                    json.dumps(result, sort_keys=True),
                    os.getpid(),
                    datetime.now(UTC).isoformat(),
                ),
            )

    def executions(self, key: str | None = None) -> list[Execution]:
        query = "SELECT key, action, parameters, result, pid, at FROM executions"
        params: tuple[str, ...] = ()
        if key is not None:
            query += " WHERE key = ?"
            params = (key,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
        return [Execution(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4], r[5]) for r in rows]


DOOR_PARAMETERS = {
    "type": "object",
    "properties": {"door": {"type": "string", "minLength": 1, "maxLength": 100}},
    "additionalProperties": False,
}


class SimulatedDoorLock(EffectAdapter):
    """A smart lock whose controller keeps a queryable log: it can always say what happened."""

    actions = frozenset({"unlock_door", "lock_door"})
    specs = (
        ActionSpec("unlock_door", HazardClass.HIGH, "Unlock a door.", DOOR_PARAMETERS),
        # Locking is the fail-safe direction (it can let nobody in): low, run by policy.
        ActionSpec("lock_door", HazardClass.LOW, "Lock a door.", DOOR_PARAMETERS),
    )

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        door = str(parameters.get("door", "front"))
        if door == "jammed":
            raise EffectError(f"the {door} door did not respond", retryable=False)
        result = {"door": door, "state": "unlocked" if action == "unlock_door" else "locked"}
        self.ledger.append(key, action, parameters, result)
        return result

    def lookup(self, key: str) -> Lookup:
        done = self.ledger.executions(key)
        if done:
            return Lookup(Known.EXECUTED, done[0].result)
        return Lookup(Known.NOT_EXECUTED)


class SimulatedNotifier(EffectAdapter):
    """A fire-and-forget gateway (think SMS): it sends, but cannot be asked what it sent."""

    actions = frozenset({"notify"})
    specs = (
        ActionSpec(
            "notify",
            HazardClass.LOW,
            "Send a message to a person.",
            {
                "type": "object",
                "properties": {
                    "to": {"type": "string", "minLength": 1, "maxLength": 200},
                    "message": {"type": "string", "maxLength": 2000},
                },
                "additionalProperties": False,
            },
        ),
    )

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def execute(self, key: str, action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        result = {"delivered_to": str(parameters.get("to", "operator"))}
        self.ledger.append(key, action, parameters, result)
        return result

    def lookup(self, key: str) -> Lookup:
        return Lookup(Known.UNKNOWN)


class EffectRegistry:
    def __init__(self, adapters: list[EffectAdapter]) -> None:
        self._by_action: Mapping[str, EffectAdapter] = {
            action: adapter for adapter in adapters for action in adapter.actions
        }
        # The gate's catalogue: every action an adapter performs, with its hazard class.
        self.catalogue = ActionCatalogue(
            spec for adapter in adapters for spec in adapter.action_specs()
        )

    def for_action(self, action: str) -> EffectAdapter | None:
        return self._by_action.get(action)

    @property
    def actions(self) -> list[str]:
        return sorted(self._by_action)
