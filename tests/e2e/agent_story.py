"""The agent's full story as real processes: decide, confirm, SIGKILL, restart, grant, finish.

Shared by the rules-model crash tests and the real-model (SmolLM2) story.
"""

from __future__ import annotations

from uuid import UUID

from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.agent_commands import decision_id_for
from commands.agent_state import confirmation_id_for
from commands.invocation import Invocation
from domain.confirmation import Confirmation, ConfirmationStatus
from domain.goal import Goal, GoalStatus
from domain.meta import Actor, ActorKind
from tests.e2e.procs import JanusProcess
from tests.servers import wait_until

DANA = Invocation(Actor(ActorKind.USER, "dana", role="approver"))


def agent_process(
    settings: Settings, model: str, crash_at: str | None = None, timeout: float = 120.0
) -> JanusProcess:
    proc = JanusProcess(settings, crash_at)
    proc.env.update(JANUS_AGENT_ENABLED="true", JANUS_AGENT_MODEL=model)
    return proc.start(timeout)


def load_goal(janus: Janus, goal_id: UUID) -> Goal:
    found = janus.app.repository.get(goal_id)
    assert isinstance(found, Goal)
    return found


def first_confirmation(janus: Janus, goal_id: UUID) -> Confirmation | None:
    confirmation_id = confirmation_id_for(decision_id_for(goal_id, 1))
    if confirmation_id not in janus.app.repository:
        return None
    found = janus.app.repository.get(confirmation_id)
    assert isinstance(found, Confirmation)
    return found


def door_runs(janus: Janus) -> int:
    return len(Ledger(janus.settings.home / "world" / "door_lock.sqlite").executions())


def unlock_story(
    janus: Janus, settings: Settings, model: str, processes: list[JanusProcess], timeout: float
) -> Goal:
    """Goal -> unlock_door -> pending -> SIGKILL -> restart -> pending -> grant -> once -> done."""
    first = agent_process(settings, model, timeout=timeout)
    processes.append(first)
    goal_id = janus.commands.submit_goal(
        m.SubmitGoal(text="unlock the front door"), DANA
    ).aggregate_id
    wait_until(lambda: first_confirmation(janus, goal_id) is not None, timeout=timeout)
    pending = first_confirmation(janus, goal_id)
    assert pending is not None
    assert pending.action == "unlock_door" and pending.hazard.value == "high"
    assert pending.status is ConfirmationStatus.PENDING
    first.kill()

    second = agent_process(settings, model, timeout=timeout)
    processes.append(second)
    assert janus.app.repository.get(pending.id).status is ConfirmationStatus.PENDING
    janus.commands.grant_confirmation(m.GrantConfirmation(confirmation_id=pending.id), DANA)
    wait_until(lambda: load_goal(janus, goal_id).status.is_terminal, timeout=timeout)
    done = load_goal(janus, goal_id)
    assert done.status is GoalStatus.COMPLETED, done.outcome
    assert [d.action["name"] for d in done.decisions] == ["unlock_door", "finish"]
    assert door_runs(janus) == 1
    second.stop()
    return done
