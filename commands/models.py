"""Commands: what a caller asks for, validated before anything is loaded or written."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.confirmation import HazardClass
from domain.job import MisfirePolicy
from domain.trade import Side

MAX_PAYLOAD_BYTES = 64 * 1024

Text = Annotated[str, Field(min_length=1, max_length=8_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=2_000)]


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, default=str))
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}")
    return value


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    parameters: dict[str, Any] = Field(default_factory=dict)

    _check = field_validator("parameters")(_bounded)


class SubmitGoal(Command):
    text: Text
    priority: int = Field(default=5, ge=0, le=9)
    goal_id: UUID | None = None


class RecordPlan(Command):
    goal_id: UUID
    steps: list[Text] = Field(min_length=1, max_length=100)


class RecordDecision(Command):
    goal_id: UUID
    decision_id: UUID | None = None
    model: Name
    model_digest: str = Field(default="", max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt: str = Field(max_length=200_000)
    context_ids: list[str] = Field(default_factory=list, max_length=1_000)
    raw_output: str = Field(max_length=200_000)
    action: Action
    timings: dict[str, float] = Field(default_factory=dict)
    rationale: str = Field(default="", max_length=8_000)

    _check = field_validator("parameters")(_bounded)


class ForkGoal(Command):
    """Continue ``original_id`` as it stood at version ``original_version`` (log position
    ``at_position``) in a new goal; its plan and decisions are copied by the usual commands."""

    original_id: UUID
    original_version: int = Field(ge=1)
    at_position: int = Field(ge=1)
    goal_id: UUID | None = None


class RecordDecisionReplay(Command):
    goal_id: UUID
    decision_id: UUID
    model: Name
    model_digest: str = Field(default="", max_length=200)
    raw_output: str = Field(max_length=200_000)
    action: dict[str, Any] | None
    agrees: bool
    timings: dict[str, float] = Field(default_factory=dict)

    _check = field_validator("action")(_bounded)


class CompleteGoal(Command):
    goal_id: UUID
    summary: Text


class FailGoal(Command):
    goal_id: UUID
    reason: Reason


class CancelGoal(Command):
    goal_id: UUID
    reason: Reason = "cancelled by operator"


class RequestConfirmation(Command):
    goal_id: UUID
    decision_id: UUID
    action: Action
    hazard: HazardClass
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    confirmation_id: UUID | None = None


class GrantConfirmation(Command):
    confirmation_id: UUID


class DenyConfirmation(Command):
    confirmation_id: UUID
    reason: Reason


class CancelConfirmation(Command):
    confirmation_id: UUID
    reason: Reason = "cancelled"


class ExpireConfirmation(Command):
    confirmation_id: UUID


class ReconcileEffect(Command):
    effect_id: UUID
    happened: bool
    note: str = Field(default="", max_length=2_000)


class CronSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["cron"] = "cron"
    expression: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"

    @field_validator("expression")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as error:
            raise ValueError(f"cron expression {value!r} does not parse: {error}") from None
        return value


class IntervalSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["interval"] = "interval"
    seconds: float = Field(gt=0, le=366 * 24 * 3600)
    start_at: datetime | None = None


class DateSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["date"] = "date"
    run_at: datetime

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("run_at needs a timezone")
        return value


Trigger = Annotated[CronSchedule | IntervalSchedule | DateSchedule, Field(discriminator="kind")]


class ScheduleJob(Command):
    name: Name
    trigger: Trigger
    action: Action
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    max_catch_up: int = Field(default=10, ge=0, le=1_000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    job_id: UUID | None = None


class PauseJob(Command):
    job_id: UUID


class ResumeJob(Command):
    job_id: UUID


class RemoveJob(Command):
    job_id: UUID


class RegisterDocument(Command):
    source_uri: str = Field(min_length=1, max_length=2_000)
    content_type: Name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    document_id: UUID | None = None


class ProposeOrder(Command):
    symbol: str = Field(pattern=r"^[A-Z0-9.\-]{1,16}$")
    side: Side
    quantity: Decimal = Field(gt=0, max_digits=20, decimal_places=8)
    limit_price: Decimal | None = Field(default=None, gt=0, max_digits=20, decimal_places=8)
    goal_id: UUID | None = None
    order_id: UUID | None = None


class RecordRiskCheck(Command):
    order_id: UUID
    passed: bool
    scores: dict[str, float] = Field(default_factory=dict)
    violations: list[Name] = Field(default_factory=list)


class SubmitOrder(Command):
    order_id: UUID
    broker_order_id: Name


class RecordFill(Command):
    order_id: UUID
    fill_id: Name
    quantity: Decimal = Field(gt=0, max_digits=20, decimal_places=8)
    price: Decimal = Field(gt=0, max_digits=20, decimal_places=8)


class CancelOrder(Command):
    order_id: UUID
    reason: Reason
