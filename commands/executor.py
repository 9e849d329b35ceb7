"""The executor: turns granted confirmations into effects, exactly once or never twice.

It follows the log from its own tracked position. For each grant it records ``Started`` before
touching the world and the outcome after, saving the outcome together with its position. After a
crash in between, the grant is read again, the effect is found already started, and the adapter is
asked what happened; if it cannot tell, the effect is parked as outcome-unknown for an operator.
Only one executor may run per log (the caller holds a leader lock).
"""

from __future__ import annotations

import logging
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.utils import get_topic

from adapters.effects import EffectError, EffectRegistry, Known
from adapters.faults import crash_point
from domain.confirmation import Confirmation
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.imports import IMPORT_LOG_ID, ImportLog
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication
from event_store.reader import NotificationReader

log = logging.getLogger(__name__)

GRANTED_TOPIC = get_topic(Confirmation.Granted)
MAX_ATTEMPTS = 3


class Executor:
    name = "executor"

    def __init__(
        self, app: JanusApplication, effects: EffectRegistry, node_id: str, batch_size: int = 500
    ) -> None:
        self.app = app
        self.reader = NotificationReader(app)
        self.effects = effects
        self.node_id = node_id
        self.batch_size = batch_size
        self.actor = Actor(ActorKind.SYSTEM, self.name)

    @property
    def position(self) -> int:
        return self.app.tracked_position(self.name)

    def run_once(self) -> int:
        """Process one batch after the tracked position; returns how many notifications it read."""
        start = self.position
        batch = self.reader.read_after(start, self.batch_size)
        imports: ImportLog | None = None
        loaded = False
        for notification in batch:
            if notification.topic == GRANTED_TOPIC:
                # Read once per batch: an import commits its events and their range together.
                if not loaded:
                    imports, loaded = self._imports(), True
                if imports is not None and imports.covers(notification.id):
                    self._on_imported_grant(notification)
                    continue
                self._on_granted(notification)
        if batch and batch[-1].id > self.position:
            self.app.save_tracked(tracking=self._tracking(batch[-1].id))
        return len(batch)

    def _imports(self) -> ImportLog | None:
        """Positions written by `janus events import`: the executor never acts on those."""
        try:
            found: ImportLog = self.app.repository.get(IMPORT_LOG_ID)
        except AggregateNotFoundError:
            return None
        return found

    def _on_imported_grant(self, notification: Notification) -> None:
        """History, not an order: nothing runs. An effect imported between its start and its
        outcome cannot be known here, so it is parked for an operator (`effects reconcile`)."""
        granted = self.reader.decode(notification).event
        effect_id = effect_id_for(granted.originator_id)
        if effect_id not in self.app.repository:
            log.info("grant at %d was imported: not executed here", notification.id)
            return
        effect = self._load(effect_id)
        if effect.status is not EffectStatus.STARTED:
            return
        ctx = CommandContext(
            command_id=f"{self.name}:{notification.id}",
            correlation_id=str(effect.goal_id),
            causation_id=str(granted.meta.event_id),
            actor=self.actor,
            node_id=self.node_id,
        )
        effect.mark_outcome_unknown(
            "imported while in progress: this node cannot tell whether it happened", ctx
        )
        self.app.save_tracked(effect, tracking=self._tracking(notification.id))

    def _tracking(self, position: int) -> Tracking:
        return Tracking(self.name, position)

    def _on_granted(self, notification: Notification) -> None:
        granted = self.reader.decode(notification).event
        confirmation: Confirmation = self.app.repository.get(granted.originator_id)
        assert isinstance(confirmation, Confirmation)
        ctx = CommandContext(
            command_id=f"{self.name}:{notification.id}",
            correlation_id=confirmation.correlation_id,
            causation_id=str(granted.meta.event_id),
            actor=self.actor,
            node_id=self.node_id,
            # The effect continues the grant's trace, so the goal's story stays one trace.
            trace_context=dict(granted.meta.trace_context),
        )
        effect, fresh = self._start(confirmation, ctx)
        crash_point("executor.after_started")
        if effect.status is EffectStatus.STARTED:
            if fresh:
                self._execute(effect, ctx)
            else:
                self._recover(effect, ctx)
        crash_point("executor.before_outcome")
        self.app.save_tracked(effect, tracking=self._tracking(notification.id))

    def _start(self, confirmation: Confirmation, ctx: CommandContext) -> tuple[Effect, bool]:
        effect_id = effect_id_for(confirmation.id)
        if effect_id in self.app.repository:
            return self._load(effect_id), False
        effect = Effect.start(
            confirmation.id, confirmation.goal_id, confirmation.action, confirmation.parameters, ctx
        )
        try:
            self.app.save(effect)
        except IntegrityError:
            return self._load(effect_id), False
        return effect, True

    def _load(self, effect_id: UUID) -> Effect:
        effect: Effect = self.app.repository.get(effect_id)
        assert isinstance(effect, Effect)
        return effect

    def _recover(self, effect: Effect, ctx: CommandContext) -> None:
        """A previous run started this effect and died before recording how it went."""
        adapter = self.effects.for_action(effect.action)
        if adapter is None:
            effect.fail(f"no adapter handles action {effect.action!r}", False, ctx)
            return
        found = adapter.lookup(effect.idempotency_key)
        if found.known is Known.EXECUTED:
            effect.succeed(found.result or {}, ctx)
        elif found.known is Known.NOT_EXECUTED:
            effect.retry(ctx)
            self.app.save(effect)
            self._execute(effect, ctx)
        else:
            log.warning("effect %s: outcome unknown after a crash; operator needed", effect.id)
            effect.mark_outcome_unknown(
                "the process died after starting this effect and the adapter cannot tell "
                "whether it happened",
                ctx,
            )

    def _execute(self, effect: Effect, ctx: CommandContext) -> None:
        adapter = self.effects.for_action(effect.action)
        if adapter is None:
            effect.fail(f"no adapter handles action {effect.action!r}", False, ctx)
            return
        while True:
            try:
                result = adapter.execute(effect.idempotency_key, effect.action, effect.parameters)
            except EffectError as error:
                if error.retryable and effect.attempt < MAX_ATTEMPTS:
                    effect.fail(str(error), True, ctx)
                    effect.retry(ctx)
                    self.app.save(effect)
                    continue
                effect.fail(str(error), error.retryable, ctx)
                return
            crash_point("executor.after_effect")
            effect.succeed(result, ctx)
            return
