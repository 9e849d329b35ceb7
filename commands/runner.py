"""Runs one command: idempotency, optimistic-concurrency retries, and one atomic save."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    RecordConflictError,
)
from pydantic import BaseModel

from adapters.faults import crash_point
from commands.errors import (
    ConcurrencyConflict,
    IdConflict,
    IdempotencyConflict,
    NotFound,
    StoreUnavailable,
)
from commands.invocation import CommandResult, Invocation
from domain.base import JanusAggregate
from domain.command_record import CommandRecord, command_record_id
from domain.meta import CommandContext
from event_store.application import JanusApplication, last_position
from event_store.group_commit import GroupCommitter

MAX_ATTEMPTS = 5


@dataclass
class Decided:
    """What a command decided: the aggregates holding new events, and how to describe it."""

    aggregate_id: UUID
    outcome: str
    aggregates: tuple[JanusAggregate, ...] = ()


class ContextFactory:
    """Makes the context for this attempt's events; knows whether this is a retry."""

    def __init__(self, make: Callable[[str], CommandContext], is_retry: bool) -> None:
        self._make = make
        self.is_retry = is_retry

    def __call__(self, correlation_id: str) -> CommandContext:
        return self._make(correlation_id)


Decide = Callable[[ContextFactory], Decided]


def payload_digest(command: BaseModel) -> str:
    body = json.dumps(
        {"type": type(command).__name__, "body": command.model_dump(mode="json")}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


class CommandRunner:
    def __init__(self, app: JanusApplication, node_id: str, saver: GroupCommitter | None = None):
        self.app = app
        self.node_id = node_id
        self._saver = saver or GroupCommitter(app)

    def load(
        self, kind: type[JanusAggregate], aggregate_id: UUID, version: int | None = None
    ) -> Any:
        try:
            aggregate: Any = self.app.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(kind.__name__.lower(), aggregate_id) from None
        except (OperationalError, InterfaceError) as error:
            raise StoreUnavailable(f"event store unavailable: {error}") from None
        if not isinstance(aggregate, kind):
            raise NotFound(kind.__name__.lower(), aggregate_id)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.app.repository

    def existing(self, kind: type[JanusAggregate], aggregate_id: UUID) -> Any:
        """What a client-chosen id already names (None: nothing). Another type is a conflict."""
        try:
            aggregate: Any = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        except (OperationalError, InterfaceError) as error:
            raise StoreUnavailable(f"event store unavailable: {error}") from None
        if not isinstance(aggregate, kind):
            raise IdConflict(
                f"id {aggregate_id} already names a {type(aggregate).__name__}, "
                f"not a {kind.__name__}: choose another id"
            )
        return aggregate

    def run(self, command: BaseModel, invocation: Invocation, decide: Decide) -> CommandResult:
        # Only a keyed command is ever compared with an earlier one.
        digest = payload_digest(command) if invocation.idempotency_key else ""
        command_id = invocation.idempotency_key or str(uuid4())
        for attempt in range(MAX_ATTEMPTS):
            replay = self._replay(invocation.idempotency_key, digest)
            if replay is not None:
                return replay
            try:
                return self._attempt(command, invocation, command_id, digest, decide, attempt > 0)
            except (IntegrityError, RecordConflictError):
                continue  # another writer got there first: reload and decide again
            except (OperationalError, InterfaceError) as error:
                raise StoreUnavailable(f"event store unavailable: {error}") from None
        raise ConcurrencyConflict(
            f"{type(command).__name__} kept conflicting with concurrent writers "
            f"after {MAX_ATTEMPTS} attempts; nothing was recorded"
        )

    def _attempt(
        self,
        command: BaseModel,
        invocation: Invocation,
        command_id: str,
        digest: str,
        decide: Decide,
        is_retry: bool,
    ) -> CommandResult:
        def make_context(correlation_id: str) -> CommandContext:
            return CommandContext(
                command_id=command_id,
                correlation_id=correlation_id,
                causation_id=invocation.causation_id or command_id,
                actor=invocation.actor,
                node_id=self.node_id,
                trace_context=dict(invocation.trace_context),
            )

        decided = decide(ContextFactory(make_context, is_retry))
        changed = any(agg.pending_events for agg in decided.aggregates)
        to_save: list[JanusAggregate] = list(decided.aggregates)
        if invocation.idempotency_key is not None:
            result = {"aggregate_id": str(decided.aggregate_id), "outcome": decided.outcome}
            to_save.append(
                CommandRecord.accept(
                    invocation.idempotency_key,
                    type(command).__name__,
                    digest,
                    result,
                    make_context(str(decided.aggregate_id)),
                )
            )
        name = type(command).__name__
        crash_point(f"command.{name}.before_save")
        recordings = self._saver.save(*to_save)
        crash_point(f"command.{name}.after_save")
        position = last_position(recordings)
        return CommandResult(
            aggregate_id=decided.aggregate_id,
            position=position if position is not None else self.app.head(),
            outcome=decided.outcome,
            changed=changed,
        )

    def _replay(self, key: str | None, digest: str) -> CommandResult | None:
        if key is None:
            return None
        try:
            record: Any = self.app.repository.get(command_record_id(key))
        except AggregateNotFoundError:
            return None
        except (OperationalError, InterfaceError) as error:
            raise StoreUnavailable(f"event store unavailable: {error}") from None
        assert isinstance(record, CommandRecord)
        if record.payload_digest != digest:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different "
                f"{record.command_type} request"
            )
        return CommandResult(
            aggregate_id=UUID(record.result["aggregate_id"]),
            position=self.app.head(),
            outcome=str(record.result["outcome"]),
            changed=False,
            replayed=True,
        )
