"""Recording a job's fires: the command context, the patient save, the gate request, the outcome.

The scheduler (``commands/scheduler.py``) decides when a scheduled time is recorded and in which
order; this module holds what recording one fire means, whoever drives it: the context every
fire event carries (its command id is the fire's key), a save that waits out an unavailable store
instead of losing the time, the fire's request to the action gate, and how a fire's outcome
follows its confirmation and effect (with the retry backoff a retryable failure earns).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError

from commands.gate import ActionGate, Requester
from commands.schedule_times import Stopping
from domain.base import JanusAggregate
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.errors import DomainError
from domain.job import JobFire, fire_confirmation_id
from domain.meta import Actor, CommandContext
from event_store.application import JanusApplication
from projections.queries import JobRow

# The scheduler's log: operators (and tests) follow one logger for everything it records.
log = logging.getLogger("commands.scheduler")

RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0
SAVE_RETRY_BASE_SECONDS = 0.2
SAVE_RETRY_CAP_SECONDS = 10.0

# (kind, detail, retryable): kind is "succeeded", "failed" or "unknown".
Outcome = tuple[str, Any, bool]


def retry_delay(attempt: int) -> timedelta:
    """How long a retryable failure of the ``attempt``-th try waits: doubling, capped."""
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** (attempt - 1), RETRY_CAP_SECONDS))


class FireRecorder:
    """Records fires for one scheduler identity (``name``, actor, node)."""

    def __init__(
        self,
        app: JanusApplication,
        gate: ActionGate,
        name: str,
        actor: Actor,
        node_id: str,
        stopping: threading.Event,
    ) -> None:
        self.app = app
        self.gate = gate
        self.name = name
        self.actor = actor
        self.node_id = node_id
        self._stopping = stopping

    def context(self, job_id: UUID, scheduled_for: datetime) -> CommandContext:
        return CommandContext(
            command_id=f"{self.name}:{job_id}:{scheduled_for.isoformat()}",
            correlation_id=str(job_id),
            causation_id=str(job_id),
            actor=self.actor,
            node_id=self.node_id,
        )

    def save(self, *aggregates: JanusAggregate, patient: bool = True) -> bool:
        """Save until it is recorded. False when it was already recorded (a conflict).

        Any other failure (read-only or absent database, lost connection) is logged and the
        save retried with backoff; it never dies silently in a pool thread. An impatient
        caller (a person waiting for an answer) gets the error instead. Raises ``Stopping``
        when the scheduler stops while waiting to retry.
        """
        # Collected once: a save takes the pending events off the aggregates, so a retry that
        # passed the aggregates again would save nothing and lose the time.
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        delay = SAVE_RETRY_BASE_SECONDS
        while True:
            try:
                self.app.save(*events)
                return True
            except IntegrityError:
                return False
            except PersistenceError as error:
                if not patient:
                    raise
                log.warning("scheduler: save failed (%s); retrying in %.1fs", error, delay)
            if self._stopping.wait(delay):
                raise Stopping
            delay = min(delay * 2, SAVE_RETRY_CAP_SECONDS)

    def record_missed(self, job: JobRow, scheduled_for: datetime, reason: str) -> None:
        fire = JobFire.miss(job.id, scheduled_for, reason, self.context(job.id, scheduled_for))
        if not self.save(fire):
            log.debug("fire %s of job %s already recorded", scheduled_for, job.id)

    def ask_gate(self, fire: JobFire, job: JobRow, ctx: CommandContext) -> list[Confirmation]:
        """The fire's action as a confirmation; a refused action fails the fire instead."""
        action = job.action
        confirmation_id = fire_confirmation_id(fire.id, fire.attempt)
        try:
            confirmation = self.gate.request(
                confirmation_id,
                Requester(job_id=job.id, fire_id=fire.id),
                str(action.get("name")),
                dict(action.get("parameters", {})),
                ctx,
            )
        except DomainError as error:
            fire.fail(f"the action gate refused the action: {error}", None, ctx)
            return []
        fire.request_action(confirmation_id, ctx)
        return [confirmation]

    def outcome(self, confirmation_id: UUID) -> Outcome | None:
        """Where the fire's confirmation and effect stand; None while neither has settled."""
        confirmation: Confirmation = self.app.repository.get(confirmation_id)
        if confirmation.status in (
            ConfirmationStatus.DENIED,
            ConfirmationStatus.EXPIRED,
            ConfirmationStatus.CANCELLED,
        ):
            why = f"; {confirmation.reason}" if confirmation.reason else ""
            return "failed", f"confirmation {confirmation.status.value}{why}", False
        effect_id = effect_id_for(confirmation_id)
        if confirmation.status is not ConfirmationStatus.GRANTED:
            return None
        if effect_id not in self.app.repository:
            return None
        effect: Effect = self.app.repository.get(effect_id)
        match effect.status:
            case EffectStatus.SUCCEEDED:
                return "succeeded", effect.result, False
            case EffectStatus.FAILED:
                return "failed", effect.error or "the effect failed", effect.retryable
            case EffectStatus.OUTCOME_UNKNOWN:
                return "unknown", effect.error or "the effect's outcome is unknown", False
            case EffectStatus.RECONCILED if effect.happened:
                return "succeeded", {"reconciled": True}, False
            case EffectStatus.RECONCILED:
                return "failed", "an operator reconciled the effect as not happened", False
        return None
