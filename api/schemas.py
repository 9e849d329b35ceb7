"""What goes over the wire: request bodies (validated hard) and typed responses.

Request models are stricter than the commands they become: text a client sends must be storable
everywhere downstream (no NUL characters, no lone surrogates, finite numbers, bounded nesting,
real time zones, datetimes within reach), so a request cannot poison a view or the scheduler.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from commands import models as m
from domain.api_key import ApiKeyStatus, Role
from domain.confirmation import ConfirmationStatus, HazardClass
from domain.goal import GoalStatus
from domain.job import FireStatus, JobStatus, MisfirePolicy

MAX_DEPTH = 16
T = TypeVar("T")
EARLIEST_YEAR, LATEST_YEAR = 1970, 2200


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _storable_tree(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable_tree(item, depth + 1)
    if isinstance(value, list):
        for item in value:
            _storable_tree(item, depth + 1)
    return value


def _reachable(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone") from None
    return value


def _crontab(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise ValueError(f"does not parse as a crontab: {error}") from None
    return value


Safe = Annotated[str, AfterValidator(_storable)]
Text = Annotated[Safe, Field(min_length=1, max_length=8_000)]
Name = Annotated[Safe, Field(min_length=1, max_length=200)]
Reason = Annotated[Safe, Field(min_length=1, max_length=2_000)]
Note = Annotated[Safe, Field(max_length=2_000)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_tree)]
When = Annotated[AwareDatetime, AfterValidator(_reachable)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- requests ------------------------------------------------------------------------------------


class GoalSubmission(Body):
    text: Text = Field(description="What the agent should achieve.")
    priority: int = Field(default=5, ge=0, le=9, description="0 (lowest) to 9 (highest).")
    goal_id: UUID | None = Field(
        default=None, description="Choose the id yourself to make the submission idempotent."
    )

    def command(self) -> m.SubmitGoal:
        return m.SubmitGoal(text=self.text, priority=self.priority, goal_id=self.goal_id)


class GoalCancellation(Body):
    reason: Reason = "cancelled by operator"


class QuestionAnswer(Body):
    answer: str = Field(min_length=1, max_length=8_000, description="What the agent reads next.")
    question_id: UUID | None = Field(
        default=None, description="The question answered; default: the goal's open question."
    )


class Denial(Body):
    reason: Reason = Field(description="Why the action must not happen.")


class Reconciliation(Body):
    happened: bool = Field(description="What the operator found out in the world.")
    note: Note = Field(default="", description="How they know, for the audit trail.")


class ActionIn(Body):
    name: Name
    parameters: JsonObject = Field(default_factory=dict)


class CronIn(Body):
    kind: Literal["cron"]
    expression: Annotated[Name, AfterValidator(_crontab)]
    timezone: Annotated[Name, AfterValidator(_time_zone)] = "UTC"


class IntervalIn(Body):
    kind: Literal["interval"]
    seconds: float = Field(ge=1, le=366 * 24 * 3600, allow_inf_nan=False)
    start_at: When | None = None


class DateIn(Body):
    kind: Literal["date"]
    run_at: When


class JobRequest(Body):
    name: Name
    trigger: Annotated[CronIn | IntervalIn | DateIn, Field(discriminator="kind")]
    action: ActionIn
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    max_catch_up: int = Field(default=10, ge=0, le=1_000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    job_id: UUID | None = None

    def command(self) -> m.ScheduleJob:
        return m.ScheduleJob.model_validate(self.model_dump(mode="json"))


# -- responses -----------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CommandAccepted(Out):
    id: UUID = Field(description="The aggregate the command addressed or created.")
    outcome: str = Field(description="What happened, e.g. submitted, granted, already_granted.")
    position: int = Field(
        description="A log position at or after the command's events: pass it as "
        "?min_position to read your own write."
    )


class GoalOut(Out):
    id: UUID
    text: str
    submitted_by: str
    priority: int
    status: GoalStatus
    latest_decision_id: UUID | None
    latest_action: str | None
    outcome: str | None
    submitted_at: datetime
    updated_at: datetime


class DecisionOut(Out):
    decision_id: UUID
    model: str
    action: dict[str, Any]
    context_ids: list[str]
    recorded_at: datetime
    position: int


class ConfirmationOut(Out):
    id: UUID
    goal_id: UUID
    decision_id: UUID
    action: str
    parameters: dict[str, Any]
    hazard: HazardClass
    status: ConfirmationStatus
    requested_at: datetime
    expires_at: datetime = Field(description="The deadline for an answer.")
    time_left_seconds: float | None = Field(
        description="Seconds until the deadline while pending (0 once passed), else null."
    )
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


class GoalDetail(GoalOut):
    latest_decision: DecisionOut | None
    pending_confirmations: list[ConfirmationOut]


class EffectOut(Out):
    id: UUID
    confirmation_id: UUID
    goal_id: UUID
    action: str
    status: str
    attempt: int
    result: dict[str, Any] | None
    error: str | None
    happened: bool | None
    started_at: datetime
    updated_at: datetime


class FireOut(Out):
    id: UUID
    job_id: UUID
    scheduled_for: datetime
    manual: bool
    status: FireStatus
    attempt: int
    error: str | None
    next_retry_at: datetime | None
    updated_at: datetime


class JobOut(Out):
    id: UUID
    name: str
    trigger: dict[str, Any]
    action: dict[str, Any]
    misfire_policy: MisfirePolicy
    max_catch_up: int
    max_attempts: int
    status: JobStatus
    scheduled_at: datetime
    last_scheduled_for: datetime | None
    last_outcome: str | None
    fired_count: int
    succeeded_count: int
    failed_count: int
    missed_count: int
    updated_at: datetime


class JobDetail(JobOut):
    recent_fires: list[FireOut] = Field(description="The latest fires, newest first.")


class ManualFire(Out):
    fire_id: UUID
    job_id: UUID
    scheduled_for: datetime
    manual: bool
    status: FireStatus
    attempt: int
    error: str | None
    position: int


class TimelineEntry(Out):
    position: int
    event_id: UUID
    type: str
    aggregate_id: UUID
    aggregate_version: int
    actor: str
    recorded_at: datetime
    command_id: str
    causation_id: str = Field(description="The event or command that caused this event.")
    caused_by_position: int | None = Field(
        description="Position of the causing event when it is in this timeline."
    )
    summary: str


class Timeline(Out):
    goal_id: UUID
    entries: list[TimelineEntry]
    next_after: int | None = Field(description="Pass as ?after= for the next page, if any.")


class ActorOut(Out):
    kind: str
    id: str
    role: str | None


class EventMetaOut(Out):
    event_id: UUID
    command_id: str
    correlation_id: str
    causation_id: str
    actor: ActorOut
    node_id: str
    trace_context: dict[str, str]


class EventOut(Out):
    position: int
    type: str
    topic: str
    aggregate_id: UUID
    aggregate_version: int
    recorded_at: datetime
    meta: EventMetaOut | None
    data: dict[str, Any]


class EventPage(Out):
    items: list[EventOut]
    next_after: int = Field(description="Pass as ?after= for the next page.")
    head: int = Field(description="The log's last position when this page was read.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page, if any.")


class ProjectionOut(Out):
    name: str
    version: int
    position: int
    head: int
    lag: int
    state: str
    error: str | None
    error_position: int | None


class Check(Out):
    name: str
    ok: bool
    detail: str


class Readiness(Out):
    ready: bool
    checks: list[Check]


class Liveness(Out):
    status: Literal["alive"] = "alive"


class KeyOut(Out):
    id: UUID
    name: str
    role: Role
    status: ApiKeyStatus
    created_at: datetime
    revoked_at: datetime | None
