"""The agent as a real process (rules model): SIGKILL at each dangerous point of a step."""

from __future__ import annotations

import signal

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from domain.goal import Goal
from tests.e2e.agent_story import DANA, agent_process, door_runs, load_goal, unlock_story
from tests.e2e.procs import JanusProcess
from tests.servers import wait_until

KILLED = -signal.SIGKILL


def test_agent_story_survives_sigkill_while_the_confirmation_is_pending(
    janus: Janus, settings: Settings, processes: list[JanusProcess]
) -> None:
    unlock_story(janus, settings, "rules", processes, timeout=60)


@pytest.mark.parametrize(
    ("crash_at", "attempts"),
    [
        ("agent.after_step_started", [1, 2]),  # died during the model call: asked again
        ("agent.before_decision", [1, 2]),  # answer lost before it was recorded: asked again
        ("agent.after_decision", [1]),  # recorded: acted on after the restart, not re-asked
    ],
)
def test_agent_killed_mid_step_leaves_one_decision_per_step(
    janus: Janus,
    settings: Settings,
    processes: list[JanusProcess],
    crash_at: str,
    attempts: list[int],
) -> None:
    doomed = agent_process(settings, "rules", crash_at=crash_at)
    processes.append(doomed)
    goal_id = janus.commands.submit_goal(m.SubmitGoal(text="lock the back door"), DANA).aggregate_id
    assert doomed.wait_dead() == KILLED

    survivor = agent_process(settings, "rules")
    processes.append(survivor)
    wait_until(lambda: load_goal(janus, goal_id).status.is_terminal, timeout=60)
    events = list(janus.app.repository.event_store.get(goal_id))
    started = [e.attempt for e in events if isinstance(e, Goal.StepStarted) and e.step == 1]
    assert started == attempts
    decided = [e.step for e in events if isinstance(e, Goal.DecisionRecorded)]
    assert decided == [1, 2]  # lock_door, then finish: one decision per step
    assert door_runs(janus) == 1
