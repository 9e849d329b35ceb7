"""Scheduled jobs and their fires. A fire is keyed by (job id, scheduled time): it happens once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import MAX_NAME, JanusAggregate, derived_id, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

MAX_CATCH_UP_LIMIT = 1_000


class TriggerKind(StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    DATE = "date"


class MisfirePolicy(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    CATCH_UP = "catch_up"


class OverlapPolicy(StrEnum):
    """What a scheduled time does while the job's previous fire has not finished."""

    SKIP = "skip"  # record the time as skipped-overlap
    QUEUE = "queue"  # record it now, request its action once the previous one has finished


class JobStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    REMOVED = "removed"


class FireStatus(StrEnum):
    FIRED = "fired"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    MISSED = "missed"
    OUTCOME_UNKNOWN = "outcome_unknown"
    QUEUED = "queued"
    WAITING = "waiting"  # its action went through the gate; the effect has not settled
    SKIPPED_OVERLAP = "skipped_overlap"


SETTLED = frozenset(
    {
        FireStatus.SUCCEEDED,
        FireStatus.FAILED,
        FireStatus.MISSED,
        FireStatus.OUTCOME_UNKNOWN,
        FireStatus.SKIPPED_OVERLAP,
    }
)


def validate_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    """Checks the shape; whether a cron expression parses is the timer engine's business."""
    try:
        kind = TriggerKind(str(trigger.get("kind")))
    except ValueError:
        raise InvalidValue("trigger.kind must be one of cron, interval, date") from None
    if kind is TriggerKind.CRON and not str(trigger.get("expression", "")).strip():
        raise InvalidValue("a cron trigger needs an expression")
    if kind is TriggerKind.INTERVAL:
        seconds = trigger.get("seconds")
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise InvalidValue("an interval trigger needs seconds > 0")
    if kind is TriggerKind.DATE and not trigger.get("run_at"):
        raise InvalidValue("a date trigger needs run_at")
    return dict(trigger)


class Job(JanusAggregate):
    @classmethod
    def schedule(
        cls,
        job_id: UUID,
        name: str,
        trigger: dict[str, Any],
        action: dict[str, Any],
        misfire_policy: MisfirePolicy,
        max_catch_up: int,
        max_attempts: int,
        ctx: CommandContext,
        overlap: OverlapPolicy = OverlapPolicy.SKIP,
    ) -> Job:
        require_text("name", name, limit=MAX_NAME)
        if not action.get("name"):
            raise InvalidValue("a job's action needs a name")
        if not 0 <= max_catch_up <= MAX_CATCH_UP_LIMIT:
            raise InvalidValue(f"max_catch_up must be between 0 and {MAX_CATCH_UP_LIMIT}")
        if not 1 <= max_attempts <= 20:
            raise InvalidValue("max_attempts must be between 1 and 20")
        return cls._open(
            cls.Scheduled,
            ctx,
            id=job_id,
            name=name,
            trigger=validate_trigger(trigger),
            action=action,
            misfire_policy=misfire_policy.value,
            max_catch_up=max_catch_up,
            max_attempts=max_attempts,
            overlap=overlap.value,
        )

    class Scheduled(JanusAggregate.Created):
        # Version 2 added the overlap policy; older jobs skip overlapping times.
        class_version = 2

        name: str
        trigger: dict[str, Any]
        action: dict[str, Any]
        misfire_policy: str
        max_catch_up: int
        max_attempts: int
        overlap: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["overlap"] = OverlapPolicy.SKIP.value

    def __init__(
        self,
        name: str,
        trigger: dict[str, Any],
        action: dict[str, Any],
        misfire_policy: str,
        max_catch_up: int,
        max_attempts: int,
        overlap: str = OverlapPolicy.SKIP.value,
    ) -> None:
        self.name = name
        self.trigger = trigger
        self.action = action
        self.misfire_policy = MisfirePolicy(misfire_policy)
        self.max_catch_up = max_catch_up
        self.max_attempts = max_attempts
        self.overlap = OverlapPolicy(overlap)
        self.status = JobStatus.ACTIVE
        self.resumed_at: datetime | None = None

    def pause(self, ctx: CommandContext) -> bool:
        if self.status is JobStatus.PAUSED:
            return False
        self._require_not_removed()
        self._record(self.Paused, ctx)
        return True

    class Paused(JanusAggregate.Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.status = JobStatus.PAUSED

    def resume(self, ctx: CommandContext) -> bool:
        if self.status is JobStatus.ACTIVE:
            return False
        self._require_not_removed()
        self._record(self.Resumed, ctx)
        return True

    class Resumed(JanusAggregate.Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.status = JobStatus.ACTIVE
            aggregate.resumed_at = self.timestamp

    def remove(self, ctx: CommandContext) -> bool:
        if self.status is JobStatus.REMOVED:
            return False
        self._record(self.Removed, ctx)
        return True

    class Removed(JanusAggregate.Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.status = JobStatus.REMOVED

    def _require_not_removed(self) -> None:
        if self.status is JobStatus.REMOVED:
            raise InvalidTransition(f"job {self.id} was removed")


def fire_id_for(job_id: UUID, scheduled_for: datetime) -> UUID:
    """Two schedulers or a restart computing the same fire get the same id and collide."""
    return derived_id("fire", job_id, scheduled_for.isoformat())


def fire_confirmation_id(fire_id: UUID, attempt: int) -> UUID:
    """Each attempt of a fire asks the gate once: a restart asking again collides on this id."""
    return derived_id("fire-confirmation", fire_id, attempt)


class JobFire(JanusAggregate):
    @classmethod
    def fire(
        cls, job_id: UUID, scheduled_for: datetime, manual: bool, ctx: CommandContext
    ) -> JobFire:
        return cls._open(
            cls.Fired,
            ctx,
            id=fire_id_for(job_id, scheduled_for),
            job_id=job_id,
            scheduled_for=scheduled_for,
            manual=manual,
        )

    class Fired(JanusAggregate.Created):
        job_id: UUID
        scheduled_for: datetime
        manual: bool

    @classmethod
    def miss(
        cls, job_id: UUID, scheduled_for: datetime, reason: str, ctx: CommandContext
    ) -> JobFire:
        return cls._open(
            cls.Missed,
            ctx,
            id=fire_id_for(job_id, scheduled_for),
            job_id=job_id,
            scheduled_for=scheduled_for,
            manual=False,
            reason=require_text("reason", reason),
        )

    class Missed(JanusAggregate.Created):
        job_id: UUID
        scheduled_for: datetime
        manual: bool
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.MISSED
            aggregate.error = self.reason

    @classmethod
    def queue(cls, job_id: UUID, scheduled_for: datetime, ctx: CommandContext) -> JobFire:
        """The time came while the previous fire was running: its action is requested later."""
        return cls._open(
            cls.Queued,
            ctx,
            id=fire_id_for(job_id, scheduled_for),
            job_id=job_id,
            scheduled_for=scheduled_for,
            manual=False,
        )

    class Queued(JanusAggregate.Created):
        job_id: UUID
        scheduled_for: datetime
        manual: bool

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.QUEUED

    @classmethod
    def skip_overlap(
        cls, job_id: UUID, scheduled_for: datetime, running: UUID, ctx: CommandContext
    ) -> JobFire:
        """The time came while the previous fire (``running``) was still going: not run."""
        return cls._open(
            cls.SkippedOverlap,
            ctx,
            id=fire_id_for(job_id, scheduled_for),
            job_id=job_id,
            scheduled_for=scheduled_for,
            manual=False,
            running_fire_id=running,
        )

    class SkippedOverlap(JanusAggregate.Created):
        job_id: UUID
        scheduled_for: datetime
        manual: bool
        running_fire_id: UUID

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.SKIPPED_OVERLAP
            aggregate.error = f"the previous fire {self.running_fire_id} was still running"

    def __init__(self, job_id: UUID, scheduled_for: datetime, manual: bool) -> None:
        self.job_id = job_id
        self.scheduled_for = scheduled_for
        self.manual = manual
        self.confirmation_id: UUID | None = None
        self.status = FireStatus.FIRED
        self.attempt = 1
        self.error: str | None = None
        self.next_retry_at: datetime | None = None
        self.result: dict[str, Any] | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.id}:{self.attempt}"

    def _require(self, *allowed: FireStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"fire {self.id} is {self.status.value}")

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def request_action(self, confirmation_id: UUID, ctx: CommandContext) -> None:
        """The fire's action goes through the gate; its outcome follows the effect's."""
        self._require(FireStatus.FIRED, FireStatus.QUEUED)
        self._record(
            self.ActionRequested, ctx, confirmation_id=confirmation_id, attempt=self.attempt
        )

    class ActionRequested(JanusAggregate.Event):
        confirmation_id: UUID
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.WAITING
            aggregate.confirmation_id = self.confirmation_id

    def succeed(self, result: dict[str, Any], ctx: CommandContext) -> None:
        self._require(FireStatus.FIRED, FireStatus.WAITING)
        self._record(self.Succeeded, ctx, result=result, attempt=self.attempt)

    class Succeeded(JanusAggregate.Event):
        result: dict[str, Any]
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.SUCCEEDED
            aggregate.result = self.result

    def fail(self, error: str, next_retry_at: datetime | None, ctx: CommandContext) -> None:
        self._require(FireStatus.FIRED, FireStatus.WAITING)
        self._record(
            self.Failed,
            ctx,
            attempt=self.attempt,
            error=require_text("error", error),
            next_retry_at=next_retry_at,
        )

    class Failed(JanusAggregate.Event):
        attempt: int
        error: str
        next_retry_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            retrying = self.next_retry_at is not None
            aggregate.status = FireStatus.RETRY_SCHEDULED if retrying else FireStatus.FAILED
            aggregate.error = self.error
            aggregate.next_retry_at = self.next_retry_at

    def retry(self, ctx: CommandContext) -> None:
        self._require(FireStatus.RETRY_SCHEDULED)
        self._record(self.Retried, ctx, attempt=self.attempt + 1)

    class Retried(JanusAggregate.Event):
        attempt: int

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.FIRED
            aggregate.attempt = self.attempt
            aggregate.next_retry_at = None

    def mark_outcome_unknown(self, reason: str, ctx: CommandContext) -> None:
        self._require(FireStatus.FIRED, FireStatus.WAITING)
        self._record(self.OutcomeUnknown, ctx, attempt=self.attempt, reason=reason)

    class OutcomeUnknown(JanusAggregate.Event):
        attempt: int
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = FireStatus.OUTCOME_UNKNOWN
            aggregate.error = self.reason
