"""Commands: what a caller asks for, validated before anything is loaded or written."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from domain.confirmation import HazardClass
from domain.errors import InvalidValue
from domain.job import MisfirePolicy, OverlapPolicy
from domain.trade import Side

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPTH = 16
# Where a value enters (API, CLI, agent), it is held to what every view and the scheduler can
# store: a value a command accepted must never stall a projection downstream.
MAX_IDEMPOTENCY_KEY = 200
MAX_ACTOR_NAME = 100
MAX_COUNT = 2**63 - 1  # a bigint column
EARLIEST_YEAR, LATEST_YEAR = 1970, 2200


def storable(value: str) -> str:
    """Text Postgres can store: no NUL character, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def storable_tree(value: Any, depth: int = 0) -> Any:
    """A JSON value every view can store: storable strings, finite numbers, bounded nesting."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            storable(str(key))
            storable_tree(item, depth + 1)
    if isinstance(value, list | tuple):
        for item in value:
            storable_tree(item, depth + 1)
    return value


def reachable(value: datetime) -> datetime:
    """Aware, and far enough from datetime's limits that schedule arithmetic cannot overflow."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a timezone")
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


def time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone") from None
    return value


Safe = Annotated[str, AfterValidator(storable)]
Text = Annotated[Safe, Field(min_length=1, max_length=8_000)]
Name = Annotated[Safe, Field(min_length=1, max_length=200)]
Reason = Annotated[Safe, Field(min_length=1, max_length=2_000)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
When = Annotated[datetime, AfterValidator(reachable)]
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def idempotency_key(value: str) -> str:
    """A caller's idempotency key: printable ASCII without spaces, at most 200 characters."""
    if len(value) > MAX_IDEMPOTENCY_KEY or not _PRINTABLE_ASCII.fullmatch(value):
        raise InvalidValue(
            f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters "
            f"without spaces (this one is {len(value)} characters)"
        )
    return value


def actor_name(value: str) -> str:
    """Who a caller says acts (the CLI's ``--as``): 1 to 100 characters, not blank-edged."""
    if not value.strip() or value != value.strip() or len(value) > MAX_ACTOR_NAME:
        raise InvalidValue(
            f"an actor name is 1 to {MAX_ACTOR_NAME} characters without leading or trailing "
            f"spaces (this one is {len(value)} characters)"
        )
    try:
        return storable(value)
    except ValueError as error:
        raise InvalidValue(f"an actor name {error}") from None


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    storable_tree(value)
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
    model_digest: Safe = Field(default="", max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt: Safe = Field(max_length=200_000)
    context_ids: list[Annotated[Safe, Field(max_length=200)]] = Field(
        default_factory=list, max_length=1_000
    )
    raw_output: Safe = Field(max_length=200_000)
    action: Action
    timings: dict[Safe, Finite] = Field(default_factory=dict)
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
    model_digest: Safe = Field(default="", max_length=200)
    raw_output: Safe = Field(max_length=200_000)
    action: dict[str, Any] | None
    agrees: bool
    timings: dict[Safe, Finite] = Field(default_factory=dict)

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
    """Ask a person to confirm a decision's action. ``hazard`` may raise the catalogue's class,
    never lower it."""

    goal_id: UUID
    decision_id: UUID
    action: Action
    hazard: HazardClass
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    confirmation_id: UUID | None = None


class RequestAction(Command):
    """Pass a decision's action through the gate: the catalogue decides its hazard (``hazard``
    may only raise it); a low hazard is granted by policy, anything else waits for a person."""

    goal_id: UUID
    decision_id: UUID
    action: Action
    hazard: HazardClass | None = None
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
    note: Safe = Field(default="", max_length=2_000)


class CronSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["cron"] = "cron"
    expression: Name
    timezone: Annotated[Name, AfterValidator(time_zone)] = "UTC"

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
    start_at: When | None = None


class DateSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["date"] = "date"
    run_at: When


Trigger = Annotated[CronSchedule | IntervalSchedule | DateSchedule, Field(discriminator="kind")]


class ScheduleJob(Command):
    name: Name
    trigger: Trigger
    action: Action
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    overlap: OverlapPolicy = OverlapPolicy.SKIP
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
    """Record a document whose bytes are already in the blob store (by default at their content
    address)."""

    source_uri: Safe = Field(min_length=1, max_length=2_000)
    content_type: Name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0, le=MAX_COUNT)
    blob_key: Safe | None = Field(default=None, min_length=1, max_length=2_000)
    title: Safe | None = Field(default=None, min_length=1, max_length=500)
    document_id: UUID | None = None


class RetractDocument(Command):
    document_id: UUID
    reason: Safe = Field(min_length=1, max_length=2_000)


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
    scores: dict[Name, Finite] = Field(default_factory=dict)
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
