"""The executor: turns granted confirmations into effects, exactly once or never twice.

It follows the log from its own tracked position. For each grant it records ``Started`` before
touching the world and the outcome after, saving the outcome together with its position. After a
crash in between, the grant is read again, the effect is found already started, and the adapter is
asked what happened; if it cannot tell, the effect is parked as outcome-unknown for an operator.

Only one executor may act per log. Its leader lock (the ``lease``) is checked right before every
call to a device, never only between batches, and every start or attempt is stamped with the
lock's term. An effect whose latest attempt belongs to another term is left alone (the batch
stops there and is read again later) until that term is provably over: its holder may have lost
the lock without noticing yet and be calling the device this very moment, so asking the device
now could see "not done" and do it a second time. Without a lease (tests, tools) the caller
vouches that no other executor runs.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.utils import get_topic

from adapters.effects import EffectAdapter, EffectError, EffectRegistry, Known, Lookup
from adapters.faults import crash_point
from adapters.locks import LeaderLock, LeadershipLost
from domain.confirmation import Confirmation
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.imports import IMPORT_LOG_ID, ImportLog
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication
from event_store.edge_store import EdgeSql
from event_store.reader import NotificationReader

log = logging.getLogger(__name__)

GRANTED_TOPIC = get_topic(Confirmation.Granted)
MAX_ATTEMPTS = 3


class TermInFlight(Exception):
    """An effect whose latest attempt belongs to a term that may still be acting."""

    def __init__(self, effect_id: UUID, term: int) -> None:
        super().__init__(f"effect {effect_id} was started by leadership term {term}")
        self.effect_id = effect_id
        self.term = term


class Executor:
    name = "executor"

    def __init__(
        self,
        app: JanusApplication,
        effects: EffectRegistry,
        node_id: str,
        batch_size: int = 500,
        lease: LeaderLock | None = None,
    ) -> None:
        self.app = app
        self.reader = NotificationReader(app)
        self.effects = effects
        self.node_id = node_id
        self.batch_size = batch_size
        self.actor = Actor(ActorKind.SYSTEM, self.name)
        self.lease = lease
        self.term = lease.fence() if lease is not None else 0
        self._waiting_for: UUID | None = None

    @property
    def position(self) -> int:
        return self.app.tracked_position(self.name)

    def run_once(self) -> int:
        """Process one batch after the tracked position; returns how many notifications it read.

        Raises LeadershipLost as soon as the lease is found lost. Returns 0 while an effect of
        another term may still be under way, and resumes from the stored position after a save
        that another executor's earlier term beat.
        """
        self._fence()
        batch = self.reader.read_after(self.position, self.batch_size)
        imports: ImportLog | None = None
        loaded = False
        try:
            for notification in batch:
                if notification.topic != GRANTED_TOPIC:
                    continue
                # Read once per batch: an import commits its events and their range together.
                if not loaded:
                    imports, loaded = self._imports(), True
                if imports is not None and imports.covers(notification.id):
                    self._on_imported_grant(notification)
                else:
                    self._on_granted(notification)
            if batch and batch[-1].id > self.position:
                self._fence()
                self.app.save_tracked(tracking=self._tracking(batch[-1].id))
        except TermInFlight as waiting:
            if waiting.effect_id != self._waiting_for:
                log.info("%s; waiting until that term is over", waiting)
                self._waiting_for = waiting.effect_id
            return 0
        except IntegrityError as error:
            # Another executor saved this position or outcome first (a term that ended):
            # nothing of ours was written, so read on from whatever is stored now.
            log.info("executor: resuming from the stored position after a conflict: %s", error)
        return len(batch)

    def _fence(self) -> None:
        """Right before touching the world (or a batch): prove the lease is still ours."""
        if self.lease is None:
            return
        if self.lease.fence() != self.term:
            raise LeadershipLost(f"leadership term {self.term} is over")

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
        confirmation: Confirmation = self.app.repository.get(granted.originator_id)
        ctx = CommandContext(
            command_id=f"{self.name}:{notification.id}",
            correlation_id=confirmation.correlation_id,
            causation_id=str(granted.meta.event_id),
            actor=self.actor,
            node_id=self.node_id,
        )
        effect.mark_outcome_unknown(
            "imported while in progress: this node cannot tell whether it happened", ctx
        )
        self.app.save_tracked(effect, tracking=self._tracking(notification.id))

    def _ingested_from_an_edge(self, granted: Any) -> bool:
        """A grant another node recorded and the edge ingester brought here: its owner (the edge,
        where the device is) executes it; running it here too would be a second execution."""
        if granted.meta.node_id == self.node_id:
            return False
        return bool(EdgeSql.of(self.app).known([granted.meta.event_id]))

    def _tracking(self, position: int) -> Tracking:
        return Tracking(self.name, position)

    def _on_granted(self, notification: Notification) -> None:
        granted = self.reader.decode(notification).event
        if self._ingested_from_an_edge(granted):
            log.info(
                "grant at %d came from edge %s: run there", notification.id, granted.meta.node_id
            )
            return
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
        try:
            self.app.save_tracked(effect, tracking=self._tracking(notification.id))
        except IntegrityError:
            # The position may have been taken by an earlier term finishing its batch; the
            # outcome is still ours to record, or the effect would stay "started" behind it.
            self._record_outcome_alone(effect, ctx)
            raise

    def _record_outcome_alone(self, effect: Effect, ctx: CommandContext) -> None:
        stored = self._load(effect.id)
        ours = (stored.term, stored.attempt) == (self.term, effect.attempt)
        if not ours or stored.status is not EffectStatus.STARTED:
            return
        if effect.status is EffectStatus.SUCCEEDED:
            stored.succeed(effect.result or {}, ctx)
        elif effect.status is EffectStatus.FAILED:
            stored.fail(effect.error or "failed", effect.retryable, ctx)
        elif effect.status is EffectStatus.OUTCOME_UNKNOWN:
            stored.mark_outcome_unknown(effect.error or "outcome unknown", ctx)
        else:
            return
        try:
            self.app.save(stored)
        except IntegrityError:
            log.info("effect %s: its outcome was recorded by another executor", effect.id)

    def _start(self, confirmation: Confirmation, ctx: CommandContext) -> tuple[Effect, bool]:
        effect_id = effect_id_for(confirmation.id)
        if effect_id in self.app.repository:
            return self._load(effect_id), False
        effect = Effect.start(
            confirmation.id,
            confirmation.goal_id,
            confirmation.action,
            confirmation.parameters,
            ctx,
            term=self.term,
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
        self._await_term(effect)
        adapter = self.effects.for_action(effect.action)
        if adapter is None:
            effect.fail(f"no adapter handles action {effect.action!r}", False, ctx)
            return
        found = self._lookup(adapter, effect)
        if found.known is Known.EXECUTED:
            effect.succeed(found.result or {}, ctx)
        elif found.known is Known.NOT_EXECUTED:
            effect.retry(ctx, term=self.term)
            self.app.save(effect)
            self._execute(effect, ctx)
        else:
            log.warning("effect %s: outcome unknown after a crash; operator needed", effect.id)
            effect.mark_outcome_unknown(
                "the process died after starting this effect and the adapter cannot tell "
                "whether it happened",
                ctx,
            )

    def _await_term(self, effect: Effect) -> None:
        """Leave an effect alone while the term of its latest attempt may still be acting."""
        self._fence()
        if self.lease is None or effect.term == self.term:
            return  # ours: this executor is the only one acting in its term, and it is here
        if not self.lease.term_over(effect.term):
            raise TermInFlight(effect.id, effect.term)

    def _lookup(self, adapter: EffectAdapter, effect: Effect) -> Lookup:
        self._fence()
        return adapter.lookup(effect.idempotency_key)

    def _execute(self, effect: Effect, ctx: CommandContext) -> None:
        adapter = self.effects.for_action(effect.action)
        if adapter is None:
            effect.fail(f"no adapter handles action {effect.action!r}", False, ctx)
            return
        while True:
            try:
                self._fence()
                result = adapter.execute(effect.idempotency_key, effect.action, effect.parameters)
            except EffectError as error:
                if error.retryable and effect.attempt < MAX_ATTEMPTS:
                    effect.fail(str(error), True, ctx)
                    effect.retry(ctx, term=self.term)
                    self.app.save(effect)
                    continue
                effect.fail(str(error), error.retryable, ctx)
                return
            crash_point("executor.after_effect")
            effect.succeed(result, ctx)
            return
