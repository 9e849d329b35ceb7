"""The scheduler: APScheduler keeps time, the event store keeps the truth.

Jobs come from the jobs view (itself built from ``Job`` events); APScheduler holds them in memory
and is rebuilt at every start, so its own store is never a second source of truth. Each fire is
an aggregate whose id is derived from (job id, scheduled time): a second scheduler, or a restart,
that tries the same fire collides on that id and does nothing. Fires due while Janus was down
follow the job's misfire policy, and every fire not run is recorded as missed.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from eventsourcing.persistence import IntegrityError

from adapters.clock import Clock, SystemClock
from adapters.effects import EffectError, EffectRegistry, Known, Lookup
from adapters.faults import crash_point
from domain.job import Job, JobFire, MisfirePolicy
from domain.meta import Actor, ActorKind, CommandContext
from event_store.application import JanusApplication
from projections.queries import JobRow, Views

log = logging.getLogger(__name__)

MAX_MISSED_PER_START = 1_000
_TICK = timedelta(milliseconds=1)
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0


def fire_time(value: datetime) -> datetime:
    """Fire keys must not depend on float rounding inside the trigger: keep milliseconds, UTC."""
    return datetime.fromtimestamp(round(value.timestamp(), 3), UTC)


def build_trigger(job: JobRow) -> Any:
    spec = job.trigger
    if spec["kind"] == "cron":
        return CronTrigger.from_crontab(spec["expression"], timezone=spec.get("timezone", "UTC"))
    if spec["kind"] == "interval":
        seconds = float(spec["seconds"])
        start = spec.get("start_at")
        start_at = datetime.fromisoformat(start) if start else job.scheduled_at
        return IntervalTrigger(
            seconds=seconds, start_date=start_at + timedelta(seconds=seconds), timezone=UTC
        )
    return DateTrigger(run_date=datetime.fromisoformat(spec["run_at"]), timezone=UTC)


def due_fire_times(job: JobRow, now: datetime, limit: int) -> list[datetime]:
    """Scheduled times after the last recorded one and not after ``now``, oldest first."""
    trigger = build_trigger(job)
    previous = job.last_scheduled_for
    if previous is None:
        # Strictly after scheduling: a job created at 12:00:00 does not owe a 12:00 fire.
        candidate = trigger.get_next_fire_time(None, job.scheduled_at + _TICK)
    else:
        candidate = trigger.get_next_fire_time(previous, now)
    due: list[datetime] = []
    while candidate is not None and candidate <= now and len(due) < limit:
        if previous is None or fire_time(candidate) > fire_time(previous):
            due.append(fire_time(candidate))
        previous = candidate
        candidate = trigger.get_next_fire_time(previous, now)
    return due


def split_by_policy(job: JobRow, due: list[datetime]) -> tuple[list[datetime], list[datetime]]:
    """(to run now, to record as missed) for fires that came due while nobody was watching."""
    policy = MisfirePolicy(job.misfire_policy)
    if not due or policy is MisfirePolicy.SKIP:
        return [], due
    if policy is MisfirePolicy.RUN_ONCE:
        return due[-1:], due[:-1]
    keep = job.max_catch_up
    return (due[-keep:] if keep else []), (due[:-keep] if keep else due)


class _FireExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler hands its executor the scheduled run times; the default one drops them."""

    def __init__(self, on_fire: Any) -> None:
        super().__init__(max_workers=4)
        self._on_fire = on_fire

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def run() -> None:
            try:
                self._on_fire(job.id, run_times)
            finally:
                self._run_job_success(job.id, [])

        self._pool.submit(run)


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
    ) -> None:
        self.app = app
        self.clock = clock or SystemClock()
        self.views = views
        self.effects = effects
        self.node_id = node_id
        self.grace = misfire_grace_seconds
        self.actor = Actor(ActorKind.SCHEDULER, node_id)
        self._jobs: dict[str, JobRow] = {}
        self._lock = threading.Lock()
        self._aps = BackgroundScheduler(
            executors={"default": _FireExecutor(self._on_fire)}, timezone=UTC
        )
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Call with the scheduler's leader lock held and the jobs view caught up."""
        self.recover()
        self.sync()
        self._aps.start()

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=True)

    def sync(self) -> None:
        """Make APScheduler's in-memory jobs match the jobs view."""
        active = {str(job.id): job for job in self.views.active_jobs()}
        with self._lock:
            for job_id in set(self._jobs) - set(active):
                self._jobs.pop(job_id)
                if self._aps.get_job(job_id):
                    self._aps.remove_job(job_id)
            for job_id, job in active.items():
                if job_id not in self._jobs:
                    self._jobs[job_id] = job
                    self._arm(job)

    def _arm(self, job: JobRow) -> None:
        now = self.clock.now()
        due = [
            t for t in due_fire_times(job, now, MAX_MISSED_PER_START) if t > self._paused_until(job)
        ]
        run_now, missed = split_by_policy(job, due)
        for scheduled_for in missed:
            self.record_missed(job, scheduled_for, "due while the scheduler was not running")
        for scheduled_for in run_now:
            self.fire(job, scheduled_for)
        trigger = build_trigger(job)
        self._aps.add_job(
            _noop,
            trigger=trigger,
            id=str(job.id),
            name=job.name,
            coalesce=False,
            max_instances=1,
            misfire_grace_time=self.grace,
            next_run_time=trigger.get_next_fire_time(None, now + _TICK),
        )

    def _paused_until(self, job: JobRow) -> datetime:
        """Times that fell inside a pause were not missed: nobody wanted them run."""
        aggregate: Job = self.app.repository.get(job.id)
        return aggregate.resumed_at or datetime.min.replace(tzinfo=UTC)

    # -- fires -----------------------------------------------------------------------------------

    def _context(self, job_id: UUID, scheduled_for: datetime) -> CommandContext:
        return CommandContext(
            command_id=f"{self.name}:{job_id}:{scheduled_for.isoformat()}",
            correlation_id=str(job_id),
            causation_id=str(job_id),
            actor=self.actor,
            node_id=self.node_id,
        )

    def _on_fire(self, job_id: str, run_times: list[datetime]) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        for run_time in run_times:
            self.fire(job, fire_time(run_time))

    def _on_missed(self, event: JobExecutionEvent) -> None:
        job = self._jobs.get(event.job_id)
        if job is not None:
            self.record_missed(job, fire_time(event.scheduled_run_time), "late past the grace time")

    def record_missed(self, job: JobRow, scheduled_for: datetime, reason: str) -> None:
        fire = JobFire.miss(job.id, scheduled_for, reason, self._context(job.id, scheduled_for))
        try:
            self.app.save(fire)
        except IntegrityError:
            log.debug("fire %s of job %s already recorded", scheduled_for, job.id)

    def fire(self, job: JobRow, scheduled_for: datetime, manual: bool = False) -> JobFire | None:
        """Record the fire, then run it. Returns None when this fire was already recorded."""
        ctx = self._context(job.id, scheduled_for)
        fire = JobFire.fire(job.id, scheduled_for, manual, ctx)
        try:
            self.app.save(fire)
        except IntegrityError:
            return None  # another scheduler, or an earlier life of this one, owns this fire
        crash_point("scheduler.after_fire")
        self._run(fire, job, ctx)
        return fire

    def _run(self, fire: JobFire, job: JobRow, ctx: CommandContext) -> None:
        action = job.action
        adapter = self.effects.for_action(action["name"])
        try:
            if adapter is None:
                raise EffectError(f"no adapter handles action {action['name']!r}", retryable=False)
            result = adapter.execute(
                fire.idempotency_key, action["name"], dict(action.get("parameters", {}))
            )
        except EffectError as error:
            self._fail(fire, job, str(error), error.retryable, ctx)
            return
        crash_point("scheduler.before_outcome")
        fire.succeed(result, ctx)
        self.app.save(fire)

    def _fail(
        self, fire: JobFire, job: JobRow, error: str, retryable: bool, ctx: CommandContext
    ) -> None:
        retry_at = None
        if retryable and fire.attempt < job.max_attempts:
            delay = min(RETRY_BASE_SECONDS * 2 ** (fire.attempt - 1), RETRY_CAP_SECONDS)
            retry_at = self.clock.now() + timedelta(seconds=delay)
        fire.fail(error, retry_at, ctx)
        self.app.save(fire)
        if retry_at is not None:
            self._schedule_retry(fire.id, retry_at)

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
        job = self._jobs.get(str(fire.job_id))
        if job is None:
            return
        ctx = self._context(fire.job_id, fire.scheduled_for)
        fire.retry(ctx)
        self.app.save(fire)
        self._run(fire, job, ctx)

    # -- recovery after a crash -------------------------------------------------------------------

    def recover(self) -> None:
        """Settle fires a previous life left open: never run a fire twice on a guess."""
        for row in self.views.fires(status="fired"):
            self._settle(UUID(row["id"]))
        for row in self.views.fires(status="retry_scheduled"):
            at = row["next_retry_at"]
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            self._schedule_retry(UUID(row["id"]), max(at, self.clock.now()))

    def _settle(self, fire_id: UUID) -> None:
        fire: JobFire = self.app.repository.get(fire_id)
        job_rows = {str(j.id): j for j in self.views.active_jobs()}
        job = job_rows.get(str(fire.job_id))
        ctx = self._context(fire.job_id, fire.scheduled_for)
        adapter = self.effects.for_action(job.action["name"]) if job else None
        found = adapter.lookup(fire.idempotency_key) if adapter else Lookup(Known.UNKNOWN)
        if found.known is Known.EXECUTED:
            fire.succeed(found.result or {}, ctx)
        elif found.known is Known.NOT_EXECUTED and job is not None:
            self._jobs.setdefault(str(job.id), job)
            self._run(fire, job, ctx)
            return
        else:
            fire.mark_outcome_unknown(
                "the scheduler died after this fire started and its action cannot say whether "
                "it ran",
                ctx,
            )
        self.app.save(fire)


def _noop() -> None:
    """APScheduler needs a callable; the fire executor above does the real work."""
