"""What goes over the wire: request bodies (validated hard) and typed responses.

Request models are stricter than the commands they become: text a client sends must be storable
everywhere downstream (no NUL characters, no lone surrogates, finite numbers, bounded nesting,
real time zones, datetimes within reach), so a request cannot poison a view or the scheduler.
"""

from __future__ import annotations

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
from domain.job import FireStatus, JobStatus, MisfirePolicy, OverlapPolicy

T = TypeVar("T")
EARLIEST_YEAR, LATEST_YEAR = 1970, 2200


# One definition of "storable" for every entry point: the command models hold it.
_storable = m.storable
_storable_tree = m.storable_tree


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


class ActionIn(Body):
    name: Name
    parameters: JsonObject = Field(default_factory=dict)


class GoalCompletion(Body):
    summary: Text = Field(description="What was achieved.")


class GoalFailure(Body):
    reason: Reason = Field(description="Why the goal cannot be achieved.")


Finite = Annotated[float, Field(allow_inf_nan=False)]
# Bounded so that even a body of escaped characters (6 bytes each) fits the request size limit:
# a longer decision is refused by field (422), never as a whole (413).
LongText = Annotated[Safe, Field(max_length=32_000)]
ShortName = Annotated[Safe, Field(min_length=1, max_length=64)]
ContextId = Annotated[Safe, Field(min_length=1, max_length=100)]


class DecisionIn(Body):
    """An agent's decision, recorded before it acts: what it was asked, what it answered, and
    the action it parsed from the answer. The action then waits for a human's confirmation."""

    decision_id: UUID | None = Field(
        default=None, description="Choose the id yourself to make the record idempotent."
    )
    model: Name = Field(description="The model's name, e.g. smollm2-135m.")
    model_digest: Annotated[Safe, Field(max_length=200)] = Field(
        default="", description="The model file's digest, to re-run the decision later."
    )
    parameters: JsonObject = Field(
        default_factory=dict, description="Sampling parameters: seed, temperature, ..."
    )
    prompt: LongText = Field(description="The prompt exactly as the model saw it.")
    context_ids: list[ContextId] = Field(
        default_factory=list, max_length=200, description="Ids of the retrieved context."
    )
    raw_output: LongText = Field(description="The model's answer, unparsed.")
    action: ActionIn = Field(description="The action parsed from the answer.")
    rationale: Annotated[Safe, Field(max_length=4_000)] = Field(
        default="", description="The agent's own explanation, if it gives one."
    )
    timings: dict[ShortName, Finite] = Field(
        default_factory=dict, max_length=50, description="Seconds per step, by name."
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 24 * 3600,
        description="How long the action's confirmation stays open (default: the server's).",
    )

    def command(self, goal_id: UUID) -> m.RecordDecision:
        body = self.model_dump(mode="json", exclude={"ttl_seconds"})
        return m.RecordDecision.model_validate({**body, "goal_id": str(goal_id)})


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
    overlap: OverlapPolicy = Field(
        default=OverlapPolicy.SKIP,
        description="A time that comes while the previous fire is still running: skip "
        "(recorded as skipped_overlap) or queue (its action is requested after).",
    )
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


class DecisionAccepted(Out):
    id: UUID = Field(description="The decision's id.")
    outcome: str = Field(description="recorded, or already_recorded for a repeat.")
    confirmation_id: UUID = Field(description="The confirmation its action waits for.")
    confirmation_outcome: str = Field(description="requested, or already_requested.")
    hazard: HazardClass = Field(description="The action's hazard: high needs an approver.")
    position: int = Field(description="Pass as ?min_position to read your own write.")


class GoalCancelled(CommandAccepted):
    withdrawn_confirmations: list[UUID] = Field(
        description="The goal's pending confirmations this cancelled."
    )


class GrantAccepted(CommandAccepted):
    execution: Literal["queued", "unknown"] = Field(
        description="queued: the executor performs the action once it reads the grant."
    )
    executor_running: bool | None = Field(
        description="Whether an executor holds its lock now (null: could not tell). "
        "With none running the action waits until one starts."
    )
    detail: str | None = Field(description="What to do when no executor is running.")


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
    goal_id: UUID | None = Field(description="The goal whose decision asked; null for a job.")
    decision_id: UUID | None
    job_id: UUID | None = Field(default=None, description="The job whose fire asked.")
    fire_id: UUID | None = None
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
    goal_id: UUID | None
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
    confirmation_id: UUID | None = Field(
        default=None, description="The confirmation this fire's action asked the gate for."
    )
    next_retry_at: datetime | None
    updated_at: datetime


class JobOut(Out):
    id: UUID
    name: str
    trigger: dict[str, Any]
    action: dict[str, Any]
    misfire_policy: MisfirePolicy
    overlap: OverlapPolicy = OverlapPolicy.SKIP
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
    confirmation_id: UUID | None = Field(
        default=None,
        description="The confirmation the fire's action asked for: a low hazard is granted by "
        "policy and runs as an effect; anything else waits for a grant.",
    )
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
