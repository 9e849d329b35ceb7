"""``janus agent``: run the agent alone (the full stack's ``agent`` service), or show its status.
(``janus goals answer``, the operator's answer to the agent's question, is in ``cli/goals.py``.)

Also runnable alone, as ``python -m cli.agent`` (the crash tests start it that way).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from types import FrameType

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from adapters.llm import ModelUnavailable
from bootstrap.agent import agent_status, run_agent
from bootstrap.container import Janus
from bootstrap.models import decision_model
from bootstrap.settings import Settings
from cli.common import JsonFlag, fail
from commands.errors import StoreUnavailable

app = typer.Typer(help="The agent: turns goals into recorded decisions made by the local model.")


@app.callback(invoke_without_command=True)
def agent(ctx: typer.Context) -> None:
    """Run the agent until SIGTERM or Ctrl-C; one active agent per log (others wait as standby).

    Prints "agent ready" once started. Without a usable model it says how to install one and
    keeps every goal waiting.
    """
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        janus = Janus.build(Settings())
    except (ValidationError, StoreUnavailable) as error:
        fail(str(error))
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        decision_model(janus.settings).check()
    except ModelUnavailable as error:
        Console(stderr=True, highlight=False).print(f"[yellow]agent waiting:[/] {error}")
    print(f"agent ready model={decision_model(janus.settings).name}", flush=True)
    try:
        run_agent(janus, stop, janus.settings.poll_interval_seconds)
    finally:
        janus.close()


@app.command("status")
def status(
    as_json: JsonFlag = False,
) -> None:
    """The agent's model (and how to install one if missing), position and lag."""
    try:
        janus = Janus.build(Settings())
    except (ValidationError, StoreUnavailable) as error:
        fail(str(error))
    try:
        found = agent_status(janus)
    finally:
        janus.close()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        colour = "green" if found["state"] == "ready" else "red"
        out = Console(highlight=False)
        out.print(f"model    {escape(str(found['model_spec'] or found['model']))}")
        out.print(f"runtime  {escape(found['runtime'])}")
        out.print(f"state    [{colour}]{escape(found['state'])}[/]")
        out.print(f"position {found['position']} of {found['head']} (lag {found['lag']})")
    if found["state"] != "ready":
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
