"""``janus`` subprocesses for edge tests: their own session, stopped (or SIGKILLed) by pid."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path


class Proc:
    """A ``janus`` subprocess in its own session; stopped by its own pid."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def printed(self, fragment: str) -> bool:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.poll() is None, "".join(self.seen)
        return any(fragment in line for line in self.seen)

    def kill(self) -> None:
        """A crash: SIGKILL to the process's own group (it and any child it started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env["JANUS_HOME"] = str(home)
    env["COLUMNS"] = "200"
    # The edge's runtime without the agent, the knowledge views and extraction: none is under test.
    env["JANUS_AGENT_ENABLED"] = "false"
    env["JANUS_RUNTIME_VIEWS"] = "none"
    env["JANUS_EXTRACTION_ENABLED"] = "false"
    env.update(extra)
    return env
