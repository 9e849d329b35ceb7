"""`janus extract`: record what each registered document names, once (entity extraction).

The embedded process runs extraction as a duty (`JANUS_EXTRACTION_ENABLED`); this command runs one
pass up to the head of the log (or keeps following it with `--follow`, the full stack's extraction
service) under the same `extraction` leader lock, so it never runs beside another extractor.
"""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from adapters.entities import ModelUnavailable
from bootstrap.container import Janus
from bootstrap.extraction import build_extraction, run_extraction
from bootstrap.settings import Settings
from commands.errors import StoreUnavailable

__all__ = ["app"]

LOCK_WAIT_SECONDS = 2.0

app = typer.Typer(help="Entity extraction: what each document names, recorded once.")


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] [red]{escape(message)}[/]")
    raise typer.Exit(1)


def _janus() -> Janus:
    try:
        return Janus.for_cli(Settings())
    except (ValidationError, StoreUnavailable) as error:
        _fail(str(error).splitlines()[0])


@app.callback(invoke_without_command=True)
def extract(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep extracting new documents until stopped.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Extract every registered document not extracted yet, up to the head of the log.

    One model call per chunk (the model is JANUS_EXTRACTION_MODEL: the agent's, or `rules`);
    a document already extracted costs no call. Exits 1 if another process is extracting.
    """
    if ctx.invoked_subcommand is not None:
        return
    janus = _janus()
    try:
        if follow:
            _follow(janus)
            return
        lock = janus.leader_lock("extraction")
        if not lock.acquire(timeout=LOCK_WAIT_SECONDS):
            _fail("another process is extracting (it holds the extraction lock)")
        try:
            outcome = _one_pass(janus)
        finally:
            lock.release()
    finally:
        janus.close()
    if as_json:
        typer.echo(json.dumps(outcome, indent=2))
    else:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(outcome["documents"].items())) or "none"
        typer.echo(f"extraction at position {outcome['position']}: documents {counts}")


def _one_pass(janus: Janus) -> dict[str, Any]:
    extraction = build_extraction(janus)
    start, head = extraction.position, janus.app.head()
    columns = (TextColumn("extracting"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("extract", total=max(head - start, 0))
        try:
            while extraction.position < head and extraction.run_once():
                progress.update(task, completed=min(extraction.position, head) - start)
        except ModelUnavailable as error:
            _fail(f"no model: {error}")
    return {"position": extraction.position, "documents": dict(extraction.outcomes)}


def _follow(janus: Janus) -> None:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"extraction ready model={build_extraction(janus).model.name}", flush=True)
    run_extraction(janus, stop, janus.settings.poll_interval_seconds)


@app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The extraction model, how far extraction has read the log, and its lag."""
    janus = _janus()
    try:
        extraction = build_extraction(janus)
        found = {"enabled": janus.settings.extraction_enabled, **extraction.status()}
    finally:
        janus.close()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    out = Console(highlight=False)
    out.print(f"model    {escape(str(found['model']))}")
    out.print(f"enabled  {found['enabled']}")
    out.print(f"position {found['position']} of {found['head']} (lag {found['lag']})")
