"""Real Janus processes for crash tests: start, wait until ready, SIGKILL."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from bootstrap.settings import Settings


def janus_env(settings: Settings, crash_at: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env["JANUS_HOME"] = str(settings.home)
    env["JANUS_POLL_INTERVAL_SECONDS"] = "0.05"
    env["JANUS_NODE_ID"] = settings.node_id
    # Stories that script decisions by hand run without the agent; agent tests turn it on.
    env["JANUS_AGENT_ENABLED"] = os.environ.get("JANUS_AGENT_ENABLED", "false")
    # Nor do they use the knowledge views or entity extraction, which load embedding and language
    # models into the process under test (their own tests run them).
    env["JANUS_RUNTIME_VIEWS"] = os.environ.get("JANUS_RUNTIME_VIEWS", "none")
    env["JANUS_EXTRACTION_ENABLED"] = os.environ.get("JANUS_EXTRACTION_ENABLED", "false")
    if settings.database_url:
        env["JANUS_DATABASE_URL"] = settings.database_url
    if crash_at:
        env["JANUS_CRASH_AT"] = crash_at
    return env


class JanusProcess:
    """``python -m bootstrap`` in its own process group, so a kill takes everything with it."""

    def __init__(self, settings: Settings, crash_at: str | None = None) -> None:
        self.env = janus_env(settings, crash_at)
        self.log_path = Path(settings.home) / f"janus-{os.getpid()}-{id(self)}.log"
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    def start(self, timeout: float = 60.0) -> JanusProcess:
        Path(self.env["JANUS_HOME"]).mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bootstrap"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        self._await_ready(timeout)
        return self

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def _await_ready(self, timeout: float) -> None:
        try:
            while not self._lines.get(timeout=timeout).startswith("janus ready"):
                pass
        except queue.Empty:
            raise TimeoutError(f"janus not ready in {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, like pulling the plug."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait_dead()

    def wait_dead(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


CLIENT_PRELUDE = """
import sys
from uuid import UUID
from bootstrap.container import Janus
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
janus = Janus.build()
"""


def run_client(
    settings: Settings, code: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Another process acting on the same store, e.g. a second operator's CLI."""
    return subprocess.run(
        [sys.executable, "-c", CLIENT_PRELUDE + code],
        env=janus_env(settings, crash_at),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def grant_elsewhere(
    settings: Settings,
    confirmation_id: object,
    operator: str,
    key: str | None = None,
    crash_at: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """An operator's grant from another process; prints the outcome."""
    code = (
        f"cmd = m.GrantConfirmation(confirmation_id=UUID('{confirmation_id}'))\n"
        f"who = Invocation(Actor(ActorKind.USER, {operator!r}), idempotency_key={key!r})\n"
        "print(janus.commands.grant_confirmation(cmd, who).outcome)\n"
    )
    return run_client(settings, code, crash_at)
