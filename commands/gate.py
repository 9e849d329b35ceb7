"""The one gate every action passes, whoever asks: an agent's decision, a job's fire, API, CLI.

An action request becomes a ``Confirmation``. The catalogue refuses unknown actions and bad
parameters and decides the hazard class (a caller may raise it, never lower it). A low hazard is
granted by policy in the same save; anything else waits for a person. Either way the executor,
the only code that runs actions, turns the grant into an ``Effect`` in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from uuid import UUID

from adapters.clock import Clock
from domain.actions import POLICY_GRANTOR, ActionCatalogue, HazardClass, granted_by_policy
from domain.confirmation import Confirmation
from domain.meta import Actor, ActorKind, CommandContext

POLICY_ACTOR = Actor(ActorKind.SYSTEM, "policy")


@dataclass(frozen=True)
class Requester:
    """Who asks: a goal's decision, or a job's fire."""

    goal_id: UUID | None = None
    decision_id: UUID | None = None
    job_id: UUID | None = None
    fire_id: UUID | None = None


@dataclass(frozen=True)
class ActionGate:
    catalogue: ActionCatalogue
    clock: Clock
    ttl: timedelta

    def check(
        self, action: str, parameters: dict[str, Any], asked: HazardClass | None = None
    ) -> HazardClass:
        """Raise InvalidAction for what the catalogue refuses; return the hazard that applies."""
        return self.catalogue.check(action, parameters, asked)

    def request(
        self,
        confirmation_id: UUID,
        requester: Requester,
        action: str,
        parameters: dict[str, Any],
        ctx: CommandContext,
        *,
        asked: HazardClass | None = None,
        ttl: timedelta | None = None,
        ask_a_person: bool = False,
    ) -> Confirmation:
        """The confirmation to save; already granted when policy allows it (same save).

        ``ask_a_person`` is an explicit request for a human answer: never granted by policy.
        """
        hazard = self.check(action, parameters, asked)
        now = self.clock.now()
        confirmation = Confirmation.request(
            confirmation_id,
            requester.goal_id,
            requester.decision_id,
            action,
            parameters,
            hazard,
            now,
            now + (ttl or self.ttl),
            ctx,
            job_id=requester.job_id,
            fire_id=requester.fire_id,
        )
        if not ask_a_person and granted_by_policy(hazard):
            confirmation.grant(POLICY_GRANTOR, now, replace(ctx, actor=POLICY_ACTOR))
        return confirmation
