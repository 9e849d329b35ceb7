"""Command services: load, call one domain method, save, return the log position."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

from adapters.clock import Clock
from commands import models as m
from commands.edge_requests import require_not_an_edge_s
from commands.errors import IdConflict, NotFound
from commands.gate import ActionGate, Requester
from commands.invocation import CommandResult, Invocation
from commands.runner import CommandRunner, ContextFactory, Decided
from domain.actions import ActionCatalogue
from domain.confirmation import Confirmation, HazardClass
from domain.document import Document, content_key, document_id_for, title_from
from domain.effect import Effect
from domain.errors import InvalidTransition, InvalidValue
from domain.goal import Decision, DecisionReplay, Goal
from domain.job import Job
from domain.trade import TradeOrder


class CommandService:
    def __init__(
        self,
        runner: CommandRunner,
        clock: Clock,
        confirmation_ttl_seconds: int = 900,
        catalogue: ActionCatalogue | None = None,
    ):
        self.runner = runner
        self.clock = clock
        self.confirmation_ttl = timedelta(seconds=confirmation_ttl_seconds)
        # Without a catalogue the gate knows no action and refuses every request.
        self.gate = ActionGate(catalogue or ActionCatalogue(), clock, self.confirmation_ttl)

    # -- goals -----------------------------------------------------------------------------------

    def submit_goal(self, cmd: m.SubmitGoal, inv: Invocation) -> CommandResult:
        goal_id = cmd.goal_id or uuid4()

        def decide(ctx: ContextFactory) -> Decided:
            found = self.runner.existing(Goal, goal_id) if _may_exist(cmd.goal_id, ctx) else None
            if found is not None:
                same = (found.text, found.priority, found.forked_from) == (
                    cmd.text,
                    cmd.priority,
                    None,
                )
                _require_same("goal", goal_id, same)
                return Decided(goal_id, "already_submitted")
            goal = Goal.submit(goal_id, cmd.text, str(inv.actor), cmd.priority, ctx(str(goal_id)))
            return Decided(goal_id, "submitted", (goal,))

        return self.runner.run(cmd, inv, decide)

    def record_plan(self, cmd: m.RecordPlan, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            goal.record_plan(list(cmd.steps), ctx(str(goal.id)))
            return Decided(goal.id, "planned", (goal,))

        return self.runner.run(cmd, inv, decide)

    def record_decision(self, cmd: m.RecordDecision, inv: Invocation) -> CommandResult:
        decision_id = cmd.decision_id or uuid4()

        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            if goal.has_decision(decision_id):
                first = next(d for d in goal.decisions if d.decision_id == decision_id)
                _require_same("decision", decision_id, first == _decision(cmd, decision_id))
                return Decided(decision_id, "already_recorded")
            goal.record_decision(_decision(cmd, decision_id), ctx(str(goal.id)))
            return Decided(decision_id, "recorded", (goal,))

        return self.runner.run(cmd, inv, decide)

    def fork_goal(self, cmd: m.ForkGoal, inv: Invocation) -> CommandResult:
        goal_id = cmd.goal_id or uuid4()

        def decide(ctx: ContextFactory) -> Decided:
            found = self.runner.existing(Goal, goal_id) if _may_exist(cmd.goal_id, ctx) else None
            if found is not None:
                same = (found.forked_from, found.forked_at_position) == (
                    cmd.original_id,
                    cmd.at_position,
                )
                _require_same("goal", goal_id, same)
                return Decided(goal_id, "already_forked")
            original: Goal = self.runner.load(Goal, cmd.original_id, cmd.original_version)
            if original.version != cmd.original_version:
                raise NotFound("goal version", f"{cmd.original_id}@{cmd.original_version}")
            fork = Goal.fork(goal_id, original, cmd.at_position, str(inv.actor), ctx(str(goal_id)))
            return Decided(goal_id, "forked", (fork,))

        return self.runner.run(cmd, inv, decide)

    def record_decision_replay(self, cmd: m.RecordDecisionReplay, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            if goal.has_replay(cmd.decision_id, cmd.model_digest, cmd.raw_output):
                return Decided(goal.id, "already_recorded")
            replay = DecisionReplay(
                decision_id=cmd.decision_id,
                model=cmd.model,
                model_digest=cmd.model_digest,
                raw_output=cmd.raw_output,
                action=cmd.action,
                agrees=cmd.agrees,
                timings=dict(cmd.timings),
            )
            goal.record_decision_replay(replay, ctx(str(goal.id)))
            return Decided(goal.id, "replay_recorded", (goal,))

        return self.runner.run(cmd, inv, decide)

    def complete_goal(self, cmd: m.CompleteGoal, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            goal.complete(cmd.summary, ctx(str(goal.id)))
            return Decided(goal.id, "completed", (goal,))

        return self.runner.run(cmd, inv, decide)

    def fail_goal(self, cmd: m.FailGoal, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            goal.fail(cmd.reason, ctx(str(goal.id)))
            return Decided(goal.id, "failed", (goal,))

        return self.runner.run(cmd, inv, decide)

    def cancel_goal(self, cmd: m.CancelGoal, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            goal.cancel(cmd.reason, ctx(str(goal.id)))
            return Decided(goal.id, "cancelled", (goal,))

        return self.runner.run(cmd, inv, decide)

    # -- confirmations ---------------------------------------------------------------------------

    def request_action(self, cmd: m.RequestAction, inv: Invocation) -> CommandResult:
        """The gate for a goal's decision: a low hazard is granted by policy, others wait."""
        return self._request(cmd, inv, ask_a_person=False)

    def request_confirmation(self, cmd: m.RequestConfirmation, inv: Invocation) -> CommandResult:
        """An explicit request for a person's answer: never granted by policy."""
        return self._request(cmd, inv, ask_a_person=True)

    def _request(
        self, cmd: m.RequestAction | m.RequestConfirmation, inv: Invocation, ask_a_person: bool
    ) -> CommandResult:
        confirmation_id = cmd.confirmation_id or uuid4()
        ttl = timedelta(seconds=cmd.ttl_seconds) if cmd.ttl_seconds else None
        parameters = dict(cmd.action.parameters)
        hazard = self.gate.check(cmd.action.name, parameters, cmd.hazard)  # before any read

        def decide(ctx: ContextFactory) -> Decided:
            goal: Goal = self.runner.load(Goal, cmd.goal_id)
            if not goal.has_decision(cmd.decision_id):
                raise NotFound("decision", cmd.decision_id)
            if _may_exist(cmd.confirmation_id, ctx):
                found = self.runner.existing(Confirmation, confirmation_id)
                if found is not None:
                    _require_same(
                        "confirmation", confirmation_id, _same_confirmation(found, cmd, hazard)
                    )
                    return Decided(confirmation_id, "already_requested")
            if goal.status.is_terminal:
                # A finished goal asks for nothing more; cancelling one withdraws its requests.
                raise InvalidTransition(f"goal {goal.id} is already {goal.status.value}")
            confirmation = self.gate.request(
                confirmation_id,
                Requester(goal_id=goal.id, decision_id=cmd.decision_id),
                cmd.action.name,
                parameters,
                ctx(str(goal.id)),
                asked=cmd.hazard,
                ttl=ttl,
                ask_a_person=ask_a_person,
            )
            outcome = "requested" if confirmation.status.value == "pending" else "granted"
            return Decided(confirmation_id, outcome, (confirmation,))

        return self.runner.run(cmd, inv, decide)

    def grant_confirmation(self, cmd: m.GrantConfirmation, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            confirmation = self._confirmation(cmd.confirmation_id)
            granted = confirmation.grant(str(inv.actor), self.clock.now(), ctx(_goal(confirmation)))
            return Decided(
                confirmation.id, "granted" if granted else "already_granted", (confirmation,)
            )

        return self.runner.run(cmd, inv, decide)

    def deny_confirmation(self, cmd: m.DenyConfirmation, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            confirmation = self._confirmation(cmd.confirmation_id)
            denied = confirmation.deny(
                str(inv.actor), cmd.reason, self.clock.now(), ctx(_goal(confirmation))
            )
            return Decided(
                confirmation.id, "denied" if denied else "already_denied", (confirmation,)
            )

        return self.runner.run(cmd, inv, decide)

    def cancel_confirmation(self, cmd: m.CancelConfirmation, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            confirmation = self._confirmation(cmd.confirmation_id)
            cancelled = confirmation.cancel(
                str(inv.actor), cmd.reason, self.clock.now(), ctx(_goal(confirmation))
            )
            outcome = "cancelled" if cancelled else "already_cancelled"
            return Decided(confirmation.id, outcome, (confirmation,))

        return self.runner.run(cmd, inv, decide)

    def expire_confirmation(self, cmd: m.ExpireConfirmation, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            confirmation = self._confirmation(cmd.confirmation_id)
            expired = confirmation.expire(self.clock.now(), ctx(_goal(confirmation)))
            outcome = "expired" if expired else "already_expired"
            return Decided(confirmation.id, outcome, (confirmation,))

        return self.runner.run(cmd, inv, decide)

    def _confirmation(self, confirmation_id: UUID) -> Confirmation:
        confirmation: Confirmation = self.runner.load(Confirmation, confirmation_id)
        require_not_an_edge_s(self.runner, confirmation_id)  # the cloud never writes an edge's
        return confirmation

    # -- effects ---------------------------------------------------------------------------------

    def reconcile_effect(self, cmd: m.ReconcileEffect, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            effect: Effect = self.runner.load(Effect, cmd.effect_id)
            effect.reconcile(cmd.happened, str(inv.actor), cmd.note, ctx(str(effect.goal_id)))
            return Decided(effect.id, "reconciled", (effect,))

        return self.runner.run(cmd, inv, decide)

    # -- jobs ------------------------------------------------------------------------------------

    def schedule_job(self, cmd: m.ScheduleJob, inv: Invocation) -> CommandResult:
        job_id = cmd.job_id or uuid4()
        # Refused now, not at every fire: the catalogue must know the action and its parameters.
        self.gate.check(cmd.action.name, dict(cmd.action.parameters))

        def decide(ctx: ContextFactory) -> Decided:
            found = self.runner.existing(Job, job_id) if _may_exist(cmd.job_id, ctx) else None
            if found is not None:
                _require_same("job", job_id, _same_job(found, cmd))
                return Decided(job_id, "already_scheduled")
            job = Job.schedule(
                job_id,
                cmd.name,
                cmd.trigger.model_dump(mode="json"),
                cmd.action.model_dump(mode="json"),
                cmd.misfire_policy,
                cmd.max_catch_up,
                cmd.max_attempts,
                ctx(str(job_id)),
                cmd.overlap,
            )
            return Decided(job_id, "scheduled", (job,))

        return self.runner.run(cmd, inv, decide)

    def pause_job(self, cmd: m.PauseJob, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            job: Job = self.runner.load(Job, cmd.job_id)
            changed = job.pause(ctx(str(job.id)))
            return Decided(job.id, "paused" if changed else "already_paused", (job,))

        return self.runner.run(cmd, inv, decide)

    def resume_job(self, cmd: m.ResumeJob, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            job: Job = self.runner.load(Job, cmd.job_id)
            changed = job.resume(ctx(str(job.id)))
            return Decided(job.id, "resumed" if changed else "already_active", (job,))

        return self.runner.run(cmd, inv, decide)

    def remove_job(self, cmd: m.RemoveJob, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            job: Job = self.runner.load(Job, cmd.job_id)
            changed = job.remove(ctx(str(job.id)))
            return Decided(job.id, "removed" if changed else "already_removed", (job,))

        return self.runner.run(cmd, inv, decide)

    # -- documents and orders (their pipelines come later) ----------------------------------------

    def register_document(self, cmd: m.RegisterDocument, inv: Invocation) -> CommandResult:
        """Without an explicit id, the same bytes from the same source are the same document."""
        document_id = cmd.document_id or document_id_for(cmd.source_uri, cmd.sha256)
        title = cmd.title or title_from(cmd.source_uri)

        def decide(ctx: ContextFactory) -> Decided:
            found = self.runner.existing(Document, document_id)
            if found is not None:
                same = (found.source_uri, found.content_type, found.sha256, found.size_bytes)
                wanted = (cmd.source_uri, cmd.content_type, cmd.sha256, cmd.size_bytes)
                _require_same("document", document_id, same == wanted)
                return Decided(document_id, "already_registered")
            document = Document.register(
                document_id,
                cmd.source_uri,
                title,
                cmd.content_type,
                cmd.sha256,
                cmd.size_bytes,
                cmd.blob_key or content_key(cmd.sha256),
                ctx(str(document_id)),
            )
            return Decided(document_id, "registered", (document,))

        return self.runner.run(cmd, inv, decide)

    def retract_document(self, cmd: m.RetractDocument, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            document: Document = self.runner.load(Document, cmd.document_id)
            changed = document.retract(cmd.reason, ctx(str(document.id)))
            outcome = "retracted" if changed else "already_retracted"
            return Decided(document.id, outcome, (document,))

        return self.runner.run(cmd, inv, decide)

    def propose_order(self, cmd: m.ProposeOrder, inv: Invocation) -> CommandResult:
        order_id = cmd.order_id or uuid4()

        def decide(ctx: ContextFactory) -> Decided:
            found = (
                self.runner.existing(TradeOrder, order_id)
                if _may_exist(cmd.order_id, ctx)
                else None
            )
            if found is not None:
                same = (found.goal_id, found.symbol, found.side, found.quantity, found.limit_price)
                wanted = (cmd.goal_id, cmd.symbol, cmd.side, cmd.quantity, cmd.limit_price)
                _require_same("order", order_id, same == wanted)
                return Decided(order_id, "already_proposed")
            correlation = str(cmd.goal_id or order_id)
            order = TradeOrder.propose(
                order_id,
                cmd.goal_id,
                cmd.symbol,
                cmd.side,
                cmd.quantity,
                cmd.limit_price,
                ctx(correlation),
            )
            return Decided(order_id, "proposed", (order,))

        return self.runner.run(cmd, inv, decide)

    def record_risk_check(self, cmd: m.RecordRiskCheck, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            order: TradeOrder = self.runner.load(TradeOrder, cmd.order_id)
            order.record_risk_check(
                cmd.passed, dict(cmd.scores), list(cmd.violations), ctx(_order_correlation(order))
            )
            return Decided(order.id, "risk_checked", (order,))

        return self.runner.run(cmd, inv, decide)

    def submit_order(self, cmd: m.SubmitOrder, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            order: TradeOrder = self.runner.load(TradeOrder, cmd.order_id)
            order.submit(cmd.broker_order_id, ctx(_order_correlation(order)))
            return Decided(order.id, "submitted", (order,))

        return self.runner.run(cmd, inv, decide)

    def record_fill(self, cmd: m.RecordFill, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            order: TradeOrder = self.runner.load(TradeOrder, cmd.order_id)
            if cmd.fill_id in order.fills:
                same = order.fills[cmd.fill_id] == (cmd.quantity, cmd.price)
                _require_same("fill", cmd.fill_id, same)
            recorded = order.record_fill(
                cmd.fill_id, cmd.quantity, cmd.price, ctx(_order_correlation(order))
            )
            outcome = order.status.value if recorded else "duplicate_fill"
            return Decided(order.id, outcome, (order,))

        return self.runner.run(cmd, inv, decide)

    def cancel_order(self, cmd: m.CancelOrder, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            order: TradeOrder = self.runner.load(TradeOrder, cmd.order_id)
            order.cancel(cmd.reason, ctx(_order_correlation(order)))
            return Decided(order.id, "cancelled", (order,))

        return self.runner.run(cmd, inv, decide)


def _may_exist(given_id: UUID | None, ctx: ContextFactory) -> bool:
    """A fresh uuid4 cannot exist yet: skip the read, unless a conflict already happened."""
    return given_id is not None or ctx.is_retry


def _require_same(kind: str, ident: object, same: bool) -> None:
    """A resubmitted client-chosen id gets the first answer only for the same request."""
    if not same:
        raise IdConflict(
            f"{kind} {ident} already exists with a different body: "
            "resubmit the same request, or choose a new id"
        )


def _same_confirmation(
    found: Confirmation, cmd: m.RequestAction | m.RequestConfirmation, hazard: HazardClass
) -> bool:
    """The deadline is not compared: it was computed from the time of the first request. The
    hazard compared is the gate's (the catalogue may have raised the one asked for)."""
    first = (found.goal_id, found.decision_id, found.action, found.parameters, found.hazard)
    wanted = (cmd.goal_id, cmd.decision_id, cmd.action.name, cmd.action.parameters, hazard)
    return first == wanted


def _same_job(found: Job, cmd: m.ScheduleJob) -> bool:
    first = (
        found.name,
        found.trigger,
        found.action,
        found.misfire_policy,
        found.max_catch_up,
        found.max_attempts,
    )
    wanted = (
        cmd.name,
        cmd.trigger.model_dump(mode="json"),
        cmd.action.model_dump(mode="json"),
        cmd.misfire_policy,
        cmd.max_catch_up,
        cmd.max_attempts,
    )
    return first == wanted


def _goal(confirmation: Confirmation) -> str:
    return confirmation.correlation_id


def _order_correlation(order: TradeOrder) -> str:
    return str(order.goal_id or order.id)


def _decision(cmd: m.RecordDecision, decision_id: UUID) -> Decision:
    if not cmd.action.name:
        raise InvalidValue("a decision needs an action")
    return Decision(
        decision_id=decision_id,
        model=cmd.model,
        model_digest=cmd.model_digest,
        parameters=dict(cmd.parameters),
        prompt=cmd.prompt,
        context_ids=list(cmd.context_ids),
        raw_output=cmd.raw_output,
        action=cmd.action.model_dump(mode="json"),
        timings=dict(cmd.timings),
        rationale=cmd.rationale,
    )
