"""The scheduler: APScheduler keeps time, the event store keeps the truth.

Jobs come from the jobs view (itself built from ``Job`` events); APScheduler holds them in memory
and is rebuilt at every start, so its own store is never a second source of truth. Each fire is
an aggregate whose id is derived from (job id, scheduled time): a second scheduler, or a restart,
that tries the same fire collides on that id and does nothing.

The scheduler never touches the world. A fire asks the action gate (commands/gate.py) in the
same save that records it: a low hazard is granted by policy, a high one waits for an approver,
and the executor runs it as an Effect. The fire's outcome follows the effect's (``settle``).

Every scheduled time ends recorded as fired, missed or skipped-overlap. One job's times are
recorded strictly in order (its "lane"): a save that fails for any reason but a conflict is
logged and retried with backoff, and no later time of that job is recorded before it. So the
job's last recorded time is also the point up to which every time is recorded, and the next
start resumes from there and records what is owed per the misfire policy. Fires due while Janus
was down follow the job's misfire policy; every fire not run is recorded as missed.

What recording one fire means (its context, the patient save, the gate request, the outcome of
its effect) lives in ``commands/fire_recording.py``; this module drives it from APScheduler.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor as Pool
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from eventsourcing.persistence import PersistenceError

from adapters.clock import Clock, SystemClock
from adapters.effects import EffectRegistry, Known, Lookup
from adapters.faults import crash_point
from adapters.timer import TICK, fire_time
from commands.errors import ConcurrencyConflict, NotFound
from commands.fire_recording import FireRecorder, retry_delay
from commands.gate import ActionGate
from commands.invocation import Invocation
from commands.schedule_times import (
    FireExecutor,
    Lane,
    Stopping,
    build_trigger,
    due_fire_times,
    split_by_policy,
)
from domain.errors import InvalidTransition
from domain.job import FireStatus, Job, JobFire, OverlapPolicy
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication
from projections.queries import JobRow, Views

__all__ = ["Scheduler", "build_trigger", "due_fire_times", "split_by_policy"]

log = logging.getLogger(__name__)

MAX_MISSED_PER_START = 1_000
SETTLE_SECONDS = 0.5


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        app: JanusApplication,
        views: Views,
        effects: EffectRegistry,
        node_id: str,
        clock: Clock | None = None,
        misfire_grace_seconds: int = 5,
        confirmation_ttl_seconds: int = 900,
    ) -> None:
        self.app = app
        self.clock = clock or SystemClock()
        self.views = views
        self.effects = effects
        self.gate = ActionGate(
            effects.catalogue, self.clock, timedelta(seconds=confirmation_ttl_seconds)
        )
        self.node_id = node_id
        self.grace = misfire_grace_seconds
        self.actor = Actor(ActorKind.SCHEDULER, node_id)
        self._lanes: dict[str, Lane] = {}
        self._armed: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.recorder = FireRecorder(app, self.gate, self.name, self.actor, node_id, self._stopping)
        self._drainer = Pool(max_workers=2, thread_name_prefix="scheduler-drain")
        self._aps = BackgroundScheduler(
            executors={
                "default": FireExecutor(self._on_fire, self._drain_later),
                "settle": ThreadPoolExecutor(max_workers=1),
            },
            timezone=UTC,
        )
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._aps.add_listener(self._on_busy, EVENT_JOB_MAX_INSTANCES)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Call with the scheduler's leader lock held and the jobs view caught up."""
        self.recover()
        self.sync()
        self._aps.add_job(
            self.settle,
            trigger=IntervalTrigger(seconds=SETTLE_SECONDS, timezone=UTC),
            id="janus:settle",
            executor="settle",
            coalesce=True,
            max_instances=1,
        )
        self._aps.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._aps.running:
            self._aps.shutdown(wait=True)
        self._drainer.shutdown(wait=True)

    @property
    def unrecorded(self) -> int:
        """Scheduled times that came and are not recorded yet (the store refused them so far)."""
        lanes = list(self._lanes.values())
        return sum(len(lane.pending) + (lane.inflight is not None) for lane in lanes)

    def sync(self) -> None:
        """Make APScheduler's in-memory jobs match the jobs view."""
        active = {str(job.id): job for job in self.views.active_jobs()}
        with self._lock:
            for job_id in set(self._armed) - set(active):
                self._armed.discard(job_id)
                self._lanes.pop(job_id, None)
                if self._aps.get_job(job_id):
                    self._aps.remove_job(job_id)
            for job_id, job in active.items():
                if job_id not in self._armed:
                    self._arm(job)
                    self._armed.add(job_id)

    def _lane(self, job: JobRow) -> Lane:
        lane = self._lanes.get(str(job.id))
        if lane is None:
            aggregate: Job = self.app.repository.get(job.id)
            lane = Lane(job, aggregate.overlap, last=job.last_scheduled_for)
            self._lanes[str(job.id)] = lane
        return lane

    def _arm(self, job: JobRow) -> None:
        now = self.clock.now()
        lane = self._lane(job)
        # Resume from the last recorded time: every time up to it is recorded (see the lanes).
        due = [
            t for t in due_fire_times(job, now, MAX_MISSED_PER_START) if t > self._paused_until(job)
        ]
        run_now, missed = split_by_policy(job, due)
        lane.add(missed, "missed")
        lane.add(run_now, "owed")
        with lane.lock:
            self._drain(lane)
        trigger = build_trigger(job)
        self._aps.add_job(
            _noop,
            trigger=trigger,
            id=str(job.id),
            name=job.name,
            coalesce=False,
            max_instances=1,
            misfire_grace_time=self.grace,
            next_run_time=trigger.get_next_fire_time(None, now + TICK),
        )

    def _paused_until(self, job: JobRow) -> datetime:
        """Times that fell inside a pause were not missed: nobody wanted them run."""
        aggregate: Job = self.app.repository.get(job.id)
        return aggregate.resumed_at or datetime.min.replace(tzinfo=UTC)

    # -- recording scheduled times, in order -----------------------------------------------------

    def _on_fire(self, job_id: str, run_times: list[datetime]) -> None:
        lane = self._lanes.get(job_id)
        if lane is None:
            return
        lane.add([fire_time(t) for t in run_times], "due")
        with lane.lock:
            self._drain(lane)

    def _on_missed(self, event: JobExecutionEvent) -> None:
        self._later(event.job_id, [event.scheduled_run_time], "missed")

    def _on_busy(self, event: JobSubmissionEvent) -> None:
        """APScheduler would drop these times: the job's previous times are still being recorded."""
        self._later(event.job_id, list(event.scheduled_run_times), "due")

    def _later(self, job_id: str, times: list[datetime], kind: str) -> None:
        lane = self._lanes.get(job_id)
        if lane is not None:
            lane.add([fire_time(t) for t in times], kind)
            self._drain_later(job_id)

    def _drain_later(self, job_id: str) -> None:
        lane = self._lanes.get(job_id)
        if lane is None or not lane.pending or self._stopping.is_set():
            return
        try:
            self._drainer.submit(self._drain_locked, lane)
        except RuntimeError:
            log.info("job %s: stopping; the next start records the remaining times", job_id)

    def _drain_locked(self, lane: Lane) -> None:
        try:
            with lane.lock:
                self._drain(lane)
        except Exception:
            log.exception("job %s: recording its scheduled times failed", lane.job.id)

    def _drain(self, lane: Lane) -> None:
        """Record the lane's pending times oldest first; call with ``lane.lock`` held."""
        items = lane.take()
        now = self.clock.now()
        late = [at for at, kind in items if kind == "due" and now - at > self._grace]
        run_late, miss_late = split_by_policy(lane.job, late)
        for index, (at, kind) in enumerate(items):
            lane.inflight = at
            try:
                if kind == "missed" or at in miss_late:
                    reason = "late past the grace time" if kind == "missed" else "recorded late"
                    self.recorder.record_missed(lane.job, at, reason)
                elif kind == "owed" or at not in late or at in run_late:
                    self._fire_scheduled(lane, at, owed=kind == "owed" or at in run_late)
            except Stopping:
                lane.put_back(items[index:])
                return
            except BaseException:
                # Kept in order for the next drain; never a later time before this one.
                lane.put_back(items[index:])
                raise
            finally:
                lane.inflight = None
            lane.last = at

    @property
    def _grace(self) -> timedelta:
        return timedelta(seconds=self.grace)

    def _fire_scheduled(self, lane: Lane, scheduled_for: datetime, owed: bool = False) -> None:
        """``owed``: the misfire policy says to run this late time, so it queues, never skips."""
        job = lane.job
        ctx = self.recorder.context(job.id, scheduled_for)
        if lane.running is not None and lane.overlap is OverlapPolicy.SKIP and not owed:
            self.recorder.save(JobFire.skip_overlap(job.id, scheduled_for, lane.running, ctx))
        elif lane.running is not None:
            queued = JobFire.queue(job.id, scheduled_for, ctx)
            if self.recorder.save(queued):
                lane.queued.append(queued.id)
        else:
            self.fire(job, scheduled_for)

    def fire(
        self,
        job: JobRow,
        scheduled_for: datetime,
        manual: bool = False,
        ctx: CommandContext | None = None,
    ) -> JobFire | None:
        """Record the fire and its request to the gate in one save. None when already recorded.

        A manual fire (a person's "run now", ``ctx`` naming them) is tried once.
        """
        ctx = ctx or self.recorder.context(job.id, scheduled_for)
        fire = JobFire.fire(job.id, scheduled_for, manual, ctx)
        confirmation = self.recorder.ask_gate(fire, job, ctx)
        if not self.recorder.save(fire, *confirmation, patient=not manual):
            return None  # another scheduler, or an earlier life of this one, owns this fire
        crash_point("scheduler.after_fire")
        lane = self._lanes.get(str(job.id))
        if lane is not None and confirmation:
            lane.running = fire.id
        return fire

    def run_now(self, job_id: UUID, invocation: Invocation) -> JobFire:
        """Fire a job now (a person's "run now"): a manual fire through the same fire path.

        The fire's events name the caller, not the scheduler; a hazardous action waits for its
        grant like any other. Raises NotFound, InvalidTransition (the job was removed) or
        ConcurrencyConflict (a fire at this very millisecond is recorded already).
        """
        job = self.views.job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        if job.status == "removed":
            raise InvalidTransition(f"job {job_id} was removed")
        scheduled_for = fire_time(self.clock.now())
        command_id = invocation.idempotency_key or f"manual:{uuid4()}"
        ctx = CommandContext(
            command_id=command_id,
            correlation_id=str(job.id),
            causation_id=invocation.causation_id or command_id,
            actor=invocation.actor,
            node_id=self.node_id,
            trace_context=dict(invocation.trace_context),
        )
        fire = self.fire(job, scheduled_for, manual=True, ctx=ctx)
        if fire is None:
            raise ConcurrencyConflict(
                f"job {job_id} already has a fire at {scheduled_for.isoformat()}; try again"
            )
        return fire

    # -- outcomes: a fire follows its effect -----------------------------------------------------

    def settle(self) -> None:
        """Record the outcome of every fire whose effect (or confirmation) has settled.

        The lanes know the fires this scheduler recorded; the view adds manual fires and any
        other fire still waiting (recorded by the API, or by an earlier life).
        """
        waiting: dict[UUID, Lane | None] = {
            lane.running: lane for lane in list(self._lanes.values()) if lane.running
        }
        for row in self.views.fires(status=FireStatus.WAITING.value):
            waiting.setdefault(UUID(row["id"]), None)
        for fire_id, lane in waiting.items():
            try:
                if self.settle_fire(fire_id) and lane is not None and lane.running == fire_id:
                    self._next_in_queue(lane)
            except (PersistenceError, Stopping) as error:
                log.warning("scheduler: settling fire %s failed (%s); retrying", fire_id, error)

    def settle_fire(self, fire_id: UUID) -> bool:
        """Whether the fire has settled (now or before)."""
        fire: JobFire = self.app.repository.get(fire_id)
        if fire.status is not FireStatus.WAITING or fire.confirmation_id is None:
            return fire.status is not FireStatus.RETRY_SCHEDULED and fire.settled
        ctx = self.recorder.context(fire.job_id, fire.scheduled_for)
        outcome = self.recorder.outcome(fire.confirmation_id)
        if outcome is None:
            return False
        kind, detail, retryable = outcome
        if kind == "succeeded":
            fire.succeed(detail or {}, ctx)
        elif kind == "unknown":
            fire.mark_outcome_unknown(str(detail), ctx)
        else:
            self._fail(fire, str(detail), retryable, ctx)
            return fire.settled
        self.recorder.save(fire)
        return True

    def _fail(self, fire: JobFire, error: str, retryable: bool, ctx: CommandContext) -> None:
        job = self._job_row(fire.job_id)
        retry_at = None
        if retryable and job is not None and fire.attempt < job.max_attempts:
            retry_at = self.clock.now() + retry_delay(fire.attempt)
        fire.fail(error, retry_at, ctx)
        self.recorder.save(fire)
        if retry_at is not None:
            self._schedule_retry(fire.id, retry_at)

    def _job_row(self, job_id: UUID) -> JobRow | None:
        lane = self._lanes.get(str(job_id))
        if lane is not None:
            return lane.job
        return next((j for j in self.views.active_jobs() if j.id == job_id), None)

    def _next_in_queue(self, lane: Lane) -> None:
        """The previous fire settled: the oldest queued one asks the gate now."""
        lane.running = None
        while lane.queued and lane.running is None:
            fire: JobFire = self.app.repository.get(lane.queued[0])
            if fire.status is FireStatus.QUEUED:
                self._request_for(fire, lane)
            lane.queued.pop(0)

    def _request_for(self, fire: JobFire, lane: Lane) -> None:
        ctx = self.recorder.context(fire.job_id, fire.scheduled_for)
        confirmation = self.recorder.ask_gate(fire, lane.job, ctx)
        self.recorder.save(fire, *confirmation)
        if confirmation:
            lane.running = fire.id

    def _schedule_retry(self, fire_id: UUID, at: datetime) -> None:
        self._aps.add_job(
            self._retry,
            trigger=DateTrigger(run_date=at, timezone=UTC),
            args=[fire_id],
            id=f"retry:{fire_id}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _retry(self, fire_id: UUID) -> None:
        fire: JobFire = self.app.repository.get(fire_id)
        job = self._job_row(fire.job_id)
        if job is None or fire.status is not FireStatus.RETRY_SCHEDULED:
            return
        ctx = self.recorder.context(fire.job_id, fire.scheduled_for)
        fire.retry(ctx)
        confirmation = self.recorder.ask_gate(fire, job, ctx)
        self.recorder.save(fire, *confirmation)
        lane = self._lanes.get(str(job.id))
        if lane is not None and confirmation:
            lane.running = fire.id

    # -- recovery after a crash -------------------------------------------------------------------

    def recover(self) -> None:
        """Pick up fires a previous life left open: never run a fire twice on a guess."""
        jobs = {str(j.id): j for j in self.views.active_jobs()}
        for row in self.views.fires(status="fired"):
            self._settle_legacy(UUID(row["id"]), jobs.get(str(row["job_id"])))
        for status in ("waiting", "queued"):
            for row in self.views.fires(status=status):
                job = jobs.get(str(row["job_id"]))
                if job is None:
                    continue
                lane = self._lane(job)
                if status == "queued":
                    lane.queued.append(UUID(row["id"]))
                else:
                    lane.running = UUID(row["id"])
        for row in self.views.fires(status="retry_scheduled"):
            at = row["next_retry_at"]
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            self._schedule_retry(UUID(row["id"]), max(at, self.clock.now()))

    def _settle_legacy(self, fire_id: UUID, job: JobRow | None) -> None:
        """A fire recorded without its gate request (by an older scheduler that ran actions
        itself): ask its adapter, and only if it surely did not run, pass it through the gate."""
        fire: JobFire = self.app.repository.get(fire_id)
        ctx = self.recorder.context(fire.job_id, fire.scheduled_for)
        adapter = self.effects.for_action(job.action["name"]) if job else None
        found = adapter.lookup(fire.idempotency_key) if adapter else Lookup(Known.UNKNOWN)
        if found.known is Known.EXECUTED:
            fire.succeed(found.result or {}, ctx)
        elif found.known is Known.NOT_EXECUTED and job is not None:
            lane = self._lane(job)
            self._request_for(fire, lane)
            return
        else:
            fire.mark_outcome_unknown(
                "the scheduler died after this fire started and its action cannot say whether "
                "it ran",
                ctx,
            )
        self.recorder.save(fire)


def _noop() -> None:
    """APScheduler needs a callable; the fire executor above does the real work."""
