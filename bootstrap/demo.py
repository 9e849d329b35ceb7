"""``janus demo``: the main guarantees, told as a story on the embedded default.

A real Janus process runs as a child (``python -m bootstrap``) and is SIGKILLed twice. The agent
inside it decides with the local model (SmolLM2 through llama.cpp); this process plays the
operator through the same command services the CLI uses. The door lock's own ledger, not
Janus's word, proves the hazardous action happened exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from sqlalchemy.engine import RowMapping

from adapters.effects import Ledger
from adapters.llm import ModelUnavailable
from bootstrap.container import Janus, world_dir
from bootstrap.models import decision_model
from bootstrap.settings import Settings
from commands import models as m
from commands.agent_commands import decision_id_for
from commands.agent_state import confirmation_id_for
from commands.invocation import CommandResult, Invocation
from domain.goal import Decision, Goal, GoalStatus
from domain.meta import Actor, ActorKind
from replay import render

DEFAULT_HOME = Path(".janus/demo")
MARKER = ".janus-demo"
READY_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0
# A model step on a busy 2-core machine; SmolLM2-135M usually answers in a few seconds.
DECISION_TIMEOUT = 300.0
HEARTBEAT_SECONDS = 2.0
# Variables that would point the child elsewhere than the demo's own embedded home.
FOREIGN_ENV = ("JANUS_DATABASE_URL", "JANUS_NATS_URL", "JANUS_CRASH_AT")


class DemoFailed(Exception):
    pass


@dataclass(frozen=True)
class Pace:
    downtime: float
    poll: float

    @classmethod
    def of(cls, fast: bool) -> Pace:
        # The outage must outlast one heartbeat interval so that a fire is really missed.
        return cls(downtime=3.0, poll=0.2) if fast else cls(downtime=5.0, poll=0.5)


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise DemoFailed(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return value


class JanusChild:
    """The Janus process under test: started, killed and stopped like any real deployment."""

    def __init__(self, home: Path, poll: float) -> None:
        self.env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        self.env.update(
            JANUS_HOME=str(home),
            JANUS_POLL_INTERVAL_SECONDS=str(poll),
            JANUS_AGENT_ENABLED="true",
            JANUS_AGENT_MODEL=os.environ.get("JANUS_AGENT_MODEL", "auto"),
        )
        self.log_path = home / "janus.log"
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DemoFailed("the Janus process is not running")
        return self.proc.pid

    def start(self) -> None:
        ready = threading.Event()
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bootstrap"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        threading.Thread(target=_watch, args=(self.proc.stdout, ready), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(0.1):
            if self.proc.poll() is not None:
                raise DemoFailed(f"Janus exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise DemoFailed(f"Janus was not ready in {READY_TIMEOUT:.0f}s")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self._reap(5.0)

    def stop(self) -> int:
        os.kill(self.pid, signal.SIGTERM)
        return self._reap(15.0)

    def _reap(self, timeout: float) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap(5.0)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _watch(stream: IO[str] | None, ready: threading.Event) -> None:
    # Draining stdout to the end also keeps the child from blocking on a full pipe.
    for line in stream or ():
        if line.startswith("janus ready"):
            ready.set()


def fresh_home(home: Path) -> Path:
    home = home.resolve()
    if home.exists() and any(home.iterdir()) and not (home / MARKER).exists():
        raise DemoFailed(f"refusing to wipe {home}: it was not made by janus demo")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by janus demo; wiped at every run\n")
    return home


class Demo:
    def __init__(self, home: Path, pace: Pace, console: Console) -> None:
        self.home = home
        self.pace = pace
        self.say = console.print
        self.console = console
        self.child = JanusChild(home, pace.poll)
        self.janus: Janus | None = None
        self.step = "setup"
        self.operator = Invocation(Actor(ActorKind.USER, os.environ.get("USER") or "operator"))
        world = world_dir(Settings(home=home))
        self.door_lock = Ledger(world / "door_lock.sqlite")
        self.notifier = Ledger(world / "notifier.sqlite")

    @property
    def j(self) -> Janus:
        assert self.janus is not None
        return self.janus

    def chapter(self, number: int, title: str) -> None:
        self.step = f"{number}. {title}"
        self.console.rule(f"[bold cyan]{number}. {escape(title)}")

    def caught_up(self, position: int | None = None) -> None:
        """Read-your-writes: the child keeps the views; wait until they hold ``position``."""
        target = self.j.app.head() if position is None else position
        self.j.relational.wait_for(target, timeout=WAIT_TIMEOUT)

    def start_child(self, why: str) -> None:
        self.child.start()
        self.say(f"[green]Janus is up[/] (pid {self.child.pid}) — {why}")

    def run(self) -> None:
        self.say(Panel(_INTRO, title="janus demo", subtitle=str(self.home), expand=False))
        self.start_child("a fresh embedded store")
        self.janus = Janus.build(Settings(home=self.home, database_url=None, nats_url=None))
        self.check_model()
        goal = self.submit_goal()
        confirmation = self.agent_decides(goal)
        self.crash_while_pending(confirmation)
        self.grant(confirmation)
        self.grant_again(confirmation)
        self.agent_finishes(goal)
        job_id, killed_at, restarted_at = self.heartbeat()
        fires = self.show_fires(job_id, killed_at, restarted_at)
        self.finish(confirmation, fires)

    # -- the story -------------------------------------------------------------------------------

    def submit_goal(self) -> UUID:
        self.chapter(1, "A person asks for something")
        result = self.j.commands.submit_goal(
            m.SubmitGoal(text="unlock the front door", priority=7), self.operator
        )
        self.caught_up(result.position)
        self.say(f"Goal [bold]{result.aggregate_id}[/] is event #{result.position} in the log.")
        return result.aggregate_id

    def check_model(self) -> None:
        model = decision_model(Settings(home=self.home))
        try:
            model.check()
        except ModelUnavailable as error:
            raise DemoFailed(f"the agent has no model: {error}") from None
        self.say(f"The agent decides with [bold]{escape(model.name)}[/] ({escape(model.runtime)}).")

    def agent_decides(self, goal_id: UUID) -> UUID:
        self.chapter(2, "The agent decides, with the local model")
        self.say("The agent asks the model for the next step, constrained to its tool catalogue…")
        confirmation_id = confirmation_id_for(decision_id_for(goal_id, 1))
        wait(lambda: confirmation_id in self.j.app.repository, DECISION_TIMEOUT, "the decision")
        self.show_decision(self.decision(goal_id, 1))
        self.chapter(3, "A hazardous action waits for a human")
        self.caught_up()
        self.say("Unlocking a door is HIGH hazard: nothing happens until someone says yes.")
        self.show_confirmation(confirmation_id, "pending")
        return confirmation_id

    def goal(self, goal_id: UUID) -> Goal:
        found: object = self.j.app.repository.get(goal_id)
        assert isinstance(found, Goal)
        return found

    def decision(self, goal_id: UUID, step: int) -> Decision:
        goal = self.goal(goal_id)
        if len(goal.decisions) < step:
            raise DemoFailed(f"the goal has no decision for step {step}")
        return goal.decisions[step - 1]

    def show_decision(self, decision: Decision) -> None:
        excerpt = decision.prompt.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>")[0]
        timings = decision.timings
        lines = [
            f"model      {decision.model} ({decision.model_digest[:19]}…)",
            f"runtime    {decision.runtime.get('library', '')}",
            f"sampling   seed {decision.parameters.get('seed')}, temperature "
            f"{decision.parameters.get('temperature')}, max_tokens "
            f"{decision.parameters.get('max_tokens')}",
            f"prompt     …{excerpt!r} ({len(decision.prompt)} chars, "
            f"{decision.usage.get('input_tokens', 0)} tokens)",
            f"output     {decision.raw_output}",
            f"timings    prompt {timings.get('prompt_ms', 0):.0f} ms, generation "
            f"{timings.get('generation_ms', 0):.0f} ms, {timings.get('tokens_per_s', 0):.1f} "
            "tokens/s",
        ]
        title = f"decision, step {decision.step}"
        self.say(Panel(escape("\n".join(lines)), title=title, expand=False))

    def agent_finishes(self, goal_id: UUID) -> None:
        self.chapter(7, "The agent sees the outcome and finishes")
        wait(
            lambda: self.goal(goal_id).status.is_terminal,
            DECISION_TIMEOUT,
            "the agent's next decision",
        )
        goal = self.goal(goal_id)
        self.show_decision(self.decision(goal_id, len(goal.decisions)))
        if goal.status is not GoalStatus.COMPLETED:
            raise DemoFailed(f"the goal ended {goal.status.value}: {goal.outcome}")
        self.say(f"Goal [bold green]completed[/]: {escape(str(goal.outcome))}")

    def show_confirmation(self, confirmation_id: UUID, expected: str) -> None:
        rows = [r for r in self.j.views.confirmations() if r["id"] == str(confirmation_id)]
        self.say(render.confirmations_table(rows, datetime.now(UTC)))
        if not rows or rows[0]["status"] != expected:
            raise DemoFailed(f"confirmation {confirmation_id} is not {expected} in the view")

    def crash_while_pending(self, confirmation_id: UUID) -> None:
        self.chapter(4, "Power cut while the question is open")
        pid = self.child.pid
        self.child.kill()
        self.say(f"[bold red]SIGKILL[/] sent to Janus (pid {pid}): no shutdown, no cleanup.")
        self.start_child("restarted on the same store")
        self.caught_up()
        self.say("After catching up from the log, the question is still open:")
        self.show_confirmation(confirmation_id, "pending")

    def grant(self, confirmation_id: UUID) -> None:
        self.chapter(5, "The operator says yes")
        result = self.j.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=confirmation_id), self.operator
        )
        self.say(f"grant → [bold]{result.outcome}[/]")
        effect = wait(
            lambda: self.effect_settled(confirmation_id), WAIT_TIMEOUT, "the door-lock effect"
        )
        if effect["status"] != "succeeded":
            raise DemoFailed(f"the effect ended {effect['status']}: {effect['error']}")
        self.say(render.effects_table([effect]))
        self.say_ledger(confirmation_id)

    def effect_settled(self, confirmation_id: UUID) -> RowMapping | None:
        for row in self.j.views.effects():
            if row["confirmation_id"] == str(confirmation_id) and row["status"] != "started":
                return row
        return None

    def say_ledger(self, confirmation_id: UUID) -> None:
        runs = self.door_lock.executions(str(confirmation_id))
        for run in runs:
            args = ", ".join(f"{k}={v}" for k, v in run.parameters.items())
            state = run.result.get("state", run.result)
            self.say(f"  door lock ledger: {run.action}({args}) → {state}, by pid {run.pid}")
        if len(runs) != 1:
            raise DemoFailed(f"the door lock ran {len(runs)} times for this grant, not once")
        self.say("The door lock's own ledger shows [bold green]1 execution[/].")

    def grant_again(self, confirmation_id: UUID) -> None:
        self.chapter(6, "A nervous double-click")
        result = self.j.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=confirmation_id), self.operator
        )
        self.say(f"grant again → [bold]{result.outcome}[/]")
        if result.outcome != "already_granted":
            raise DemoFailed(f"a second grant answered {result.outcome!r}")
        self.caught_up()
        self.say_ledger(confirmation_id)

    def heartbeat(self) -> tuple[UUID, datetime, datetime]:
        self.chapter(8, "A heartbeat job lives through an outage")
        result = self.schedule_heartbeat()
        self.say(
            f"Job [bold]heartbeat[/] notifies every {HEARTBEAT_SECONDS:g}s; misfire policy "
            "[bold]skip[/]: beats due while Janus is down are recorded as missed, not replayed."
        )
        job_id = result.aggregate_id
        wait(lambda: len(self.fires(job_id, "succeeded")) >= 2, WAIT_TIMEOUT, "two heartbeats")
        self.say(f"{len(self.fires(job_id, 'succeeded'))} heartbeats delivered. Now:")
        killed_at, restarted_at = self.outage()
        wait(
            lambda: any(
                render.aware(f["scheduled_for"]) > restarted_at
                for f in self.fires(job_id, "succeeded")
            ),
            WAIT_TIMEOUT,
            "a heartbeat after the restart",
        )
        return job_id, killed_at, restarted_at

    def outage(self) -> tuple[datetime, datetime]:
        killed_at = datetime.now(UTC)
        self.child.kill()
        self.say(f"[bold red]SIGKILL[/]. Janus stays down for {self.pace.downtime:g}s…")
        time.sleep(self.pace.downtime)  # a real outage is the point of this chapter
        self.start_child("back after the outage")
        return killed_at, datetime.now(UTC)

    def schedule_heartbeat(self) -> CommandResult:
        return self.j.commands.schedule_job(
            m.ScheduleJob.model_validate(
                {
                    "name": "heartbeat",
                    "trigger": {"kind": "interval", "seconds": HEARTBEAT_SECONDS},
                    "action": {"name": "notify", "parameters": {"to": "operator"}},
                    "misfire_policy": "skip",
                }
            ),
            self.operator,
        )

    def fires(self, job_id: UUID, status: str | None = None) -> list[RowMapping]:
        return self.j.views.fires(job_id, status)

    def show_fires(self, job_id: UUID, killed_at: datetime, restarted_at: datetime) -> list[Any]:
        self.caught_up()
        fires = self.fires(job_id)
        phase = {f["id"]: _phase(f["scheduled_for"], killed_at, restarted_at) for f in fires}
        self.say(render.fires_table(fires, phase))
        missed = [f for f in fires if f["status"] == "missed"]
        after = [f for f in fires if phase[f["id"]] == "after restart"]
        if not missed:
            raise DemoFailed("no heartbeat was recorded as missed during the outage")
        if not any(f["status"] == "succeeded" for f in after):
            raise DemoFailed("no heartbeat succeeded after the restart")
        self.say(
            f"{len(missed)} beat(s) fell in the outage and are recorded as [yellow]missed[/]; "
            "the schedule carried on from the restart."
        )
        return fires

    def finish(self, confirmation_id: UUID, fires: list[Any]) -> None:
        self.chapter(9, "Shutting down")
        pid = self.child.pid
        code = self.child.stop()
        self.say(f"SIGTERM sent to Janus (pid {pid}); it stopped with exit code {code}.")
        if code != 0:
            raise DemoFailed(f"Janus exited with {code} on SIGTERM instead of stopping cleanly")
        door_runs = len(self.door_lock.executions(str(confirmation_id)))
        deliveries = [e.key for e in self.notifier.executions()]
        duplicates = len(deliveries) - len(set(deliveries))
        if door_runs != 1 or duplicates:
            raise DemoFailed(f"door lock ran {door_runs} times; {duplicates} duplicate heartbeats")
        statuses = [f["status"] for f in fires]
        summary = "\n".join(
            [
                f"events in the log:              {self.j.app.head()}",
                f"door lock executions (grant):   {door_runs}  → executed exactly once",
                f"heartbeats succeeded / missed:  {statuses.count('succeeded')} / "
                f"{statuses.count('missed')}",
                f"notifier deliveries:            {len(deliveries)} ({duplicates} duplicates)",
            ]
        )
        self.say(Panel(summary, title="summary", border_style="green", expand=False))


def _phase(scheduled_for: datetime, killed_at: datetime, restarted_at: datetime) -> str:
    at = render.aware(scheduled_for)
    if at < killed_at:
        return "before crash"
    return "during outage" if at < restarted_at else "after restart"


_INTRO = (
    "A person asks an agent to unlock the front door. The agent's local model picks a tool; "
    "the decision is recorded before anything happens. Unlocking is hazardous, so Janus asks a "
    "human first, and the question must survive crashes. When the answer is yes, the door must "
    "unlock exactly once: not zero times, not twice, whatever dies along the way. Then the model "
    "sees the outcome and finishes the goal."
)


@contextmanager
def _child_always_dies(demo: Demo) -> Iterator[None]:
    try:
        yield
    finally:
        demo.child.ensure_dead()
        if demo.janus is not None:
            demo.janus.close()


def run_demo(home: Path, fast: bool = False, debug: bool = False) -> int:
    """Tell the story; returns the process exit code (0 when every check held)."""
    console = Console(highlight=False)
    demo: Demo | None = None
    try:
        demo = Demo(fresh_home(home), Pace.of(fast), console)
        with _child_always_dies(demo):
            demo.run()
    except Exception as error:  # noqa: BLE001 - any failure ends the story with its cause
        if debug:
            console.print_exception()
        step = demo.step if demo else "setup"
        console.print(
            f"[bold red]demo failed in step {escape(step)}:[/] "
            f"{type(error).__name__}: {escape(render.error_text(error))}"
        )
        if demo and (tail := demo.child.log_tail()):
            console.print(Panel(escape(tail), title="janus log (tail)", expand=False))
        return 1
    console.print("[bold green]demo finished: every check held.[/]")
    return 0
