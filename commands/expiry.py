"""Records expiry of confirmations whose deadline passed, including while Janus was down.

Granting after the deadline is refused by the domain whatever this does; the sweep makes the
expiry a recorded fact so views, audits and operators see it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from adapters.clock import Clock
from commands.invocation import Invocation
from commands.models import ExpireConfirmation
from commands.service import CommandService
from domain.errors import AlreadyDecided, InvalidTransition
from domain.meta import Actor, ActorKind

log = logging.getLogger(__name__)


class ExpirySweeper:
    name = "expiry"

    def __init__(
        self,
        commands: CommandService,
        due: Callable[[datetime], list[UUID]],
        clock: Clock,
    ) -> None:
        self.commands = commands
        self.due = due
        self.clock = clock
        self.actor = Actor(ActorKind.SYSTEM, self.name)

    def sweep(self) -> int:
        expired = 0
        for confirmation_id in self.due(self.clock.now()):
            invocation = Invocation(self.actor, idempotency_key=f"expire:{confirmation_id}")
            try:
                result = self.commands.expire_confirmation(
                    ExpireConfirmation(confirmation_id=confirmation_id), invocation
                )
            except (AlreadyDecided, InvalidTransition) as error:
                log.info("confirmation %s not expired: %s", confirmation_id, error)
                continue
            expired += int(result.changed)
        return expired
