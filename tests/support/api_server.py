"""``python -m api`` as a real process for the end-to-end API tests; holds no tests itself."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from bootstrap.settings import Settings
from tests.e2e.procs import janus_env

READY = re.compile(r"janus api ready on (http://\S+)")


class ServerExited(RuntimeError):
    """The server process ended before it said it was ready."""


class ApiServer:
    """The API with its in-process runtime, in its own process group so a kill takes it all."""

    def __init__(self, settings: Settings, port: int, **env: str) -> None:
        self.env = janus_env(settings)
        self.env.update({"JANUS_API_PORT": str(port), "JANUS_API_RUNTIME": "on"})
        self.env.update(env)
        self.home = Path(settings.home)
        self.log_path = self.home / f"api-{port}-{id(self)}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self, timeout: float = 60.0) -> ApiServer:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api"],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        try:
            while True:
                line = self._lines.get(timeout=timeout)
                if line is None:
                    raise ServerExited(f"api exited before it was ready:\n{self.log()}")
                if found := READY.search(line):
                    self.url = found.group(1)
                    return self
        except queue.Empty:
            raise TimeoutError(f"api not ready in {timeout}s:\n{self.log()}") from None

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, like pulling the plug."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(60)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(30)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)
