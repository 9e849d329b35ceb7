"""The real-world effect of a granted action. Started is recorded before the world is touched."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, derived_id, require_text
from domain.errors import InvalidTransition
from domain.meta import CommandContext


class EffectStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    RECONCILED = "reconciled"


def effect_id_for(confirmation_id: UUID) -> UUID:
    """One effect per confirmation: a second start collides on this id instead of running twice."""
    return derived_id("effect", confirmation_id)


class Effect(JanusAggregate):
    @classmethod
    def start(
        cls,
        confirmation_id: UUID,
        goal_id: UUID | None,
        action: str,
        parameters: dict[str, Any],
        ctx: CommandContext,
        term: int = 0,
    ) -> Effect:
        """``term`` is the executor's leadership term (0: no leader lock, or before terms)."""
        return cls._open(
            cls.Started,
            ctx,
            id=effect_id_for(confirmation_id),
            confirmation_id=confirmation_id,
            goal_id=goal_id,
            action=action,
            parameters=parameters,
            idempotency_key=str(confirmation_id),
            term=term,
        )

    class Started(JanusAggregate.Created):
        """Version 2 added ``term``: effects started before terms existed carry term 0."""

        class_version = 2
        confirmation_id: UUID
        goal_id: UUID | None  # None when a job's fire requested the action
        action: str
        parameters: dict[str, Any]
        idempotency_key: str
        term: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["term"] = 0

    def __init__(
        self,
        confirmation_id: UUID,
        goal_id: UUID | None,
        action: str,
        parameters: dict[str, Any],
        idempotency_key: str,
        term: int,
    ) -> None:
        self.confirmation_id = confirmation_id
        self.goal_id = goal_id
        self.action = action
        self.parameters = parameters
        self.idempotency_key = idempotency_key
        self.status = EffectStatus.STARTED
        self.attempt = 1
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.retryable = False
        self.happened: bool | None = None
        # The leadership term of the latest attempt: the one that may be touching the world.
        self.term = term

    @property
    def awaits_outcome(self) -> bool:
        return self.status is EffectStatus.STARTED

    def _require(self, *allowed: EffectStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"effect {self.id} is {self.status.value}")

    def retry(self, ctx: CommandContext, term: int = 0) -> None:
        """Only after the adapter confirmed the previous attempt did not happen, or it failed."""
        if self.status is EffectStatus.FAILED and not self.retryable:
            raise InvalidTransition(f"effect {self.id} failed permanently")
        self._require(EffectStatus.STARTED, EffectStatus.FAILED)
        self._record(self.AttemptStarted, ctx, attempt=self.attempt + 1, term=term)

    class AttemptStarted(JanusAggregate.Event):
        """Version 2 added ``term``, as on ``Started``."""

        class_version = 2
        attempt: int
        term: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["term"] = 0

        def apply(self, aggregate: Any) -> None:
            aggregate.attempt = self.attempt
            aggregate.status = EffectStatus.STARTED
            aggregate.term = self.term

    def succeed(self, result: dict[str, Any], ctx: CommandContext) -> None:
        self._require(EffectStatus.STARTED)
        self._record(self.Succeeded, ctx, result=result, attempt=self.attempt)

    class Succeeded(JanusAggregate.Event):
        result: dict[str, Any]
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = EffectStatus.SUCCEEDED
            aggregate.result = self.result

    def fail(self, error: str, retryable: bool, ctx: CommandContext) -> None:
        self._require(EffectStatus.STARTED)
        self._record(
            self.Failed,
            ctx,
            error=require_text("error", error),
            retryable=retryable,
            attempt=self.attempt,
        )

    class Failed(JanusAggregate.Event):
        error: str
        retryable: bool
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = EffectStatus.FAILED
            aggregate.error = self.error
            aggregate.retryable = self.retryable

    def mark_outcome_unknown(self, reason: str, ctx: CommandContext) -> None:
        self._require(EffectStatus.STARTED)
        self._record(self.OutcomeUnknown, ctx, reason=require_text("reason", reason))

    class OutcomeUnknown(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = EffectStatus.OUTCOME_UNKNOWN
            aggregate.error = self.reason

    def reconcile(self, happened: bool, reconciled_by: str, note: str, ctx: CommandContext) -> None:
        """An operator's word on an effect nobody else could vouch for."""
        self._require(EffectStatus.OUTCOME_UNKNOWN)
        self._record(
            self.Reconciled,
            ctx,
            happened=happened,
            reconciled_by=require_text("reconciled_by", reconciled_by),
            note=require_text("note", note, allow_empty=True),
        )

    class Reconciled(JanusAggregate.Event):
        happened: bool
        reconciled_by: str
        note: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = EffectStatus.RECONCILED
            aggregate.happened = self.happened
