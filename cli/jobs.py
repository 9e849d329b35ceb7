"""``janus jobs``: recurring and one-off scheduled actions, and their fires."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bootstrap.status import NO_SCHEDULER, runtime_status
from cli.common import (
    BadInput,
    IdempotencyKey,
    JsonFlag,
    Params,
    cli_errors,
    fresh,
    invocation,
    open_janus,
    out,
    parse_params,
    print_outcome,
    print_written,
    resolve,
)
from commands import models as m
from commands.errors import NotFound
from projections import relational
from replay import render

app = typer.Typer(no_args_is_help=True, help="Recurring and one-off scheduled actions.")


@app.command("list")
def jobs_list(as_json: JsonFlag = False) -> None:
    """List jobs with their trigger, misfire policy and fire counts."""
    with cli_errors(), open_janus() as janus:
        fresh(janus)
        rows = janus.views.jobs()
    if as_json:
        typer.echo(render.to_json(rows))
        return
    out().print(render.jobs_table(rows))


def _trigger(every: float | None, cron: str | None, at: str | None) -> dict[str, Any]:
    options = (("interval", every), ("cron", cron), ("date", at))
    given = [(kind, value) for kind, value in options if value is not None]
    if len(given) != 1:
        raise BadInput("give exactly one of --every, --cron or --at")
    kind, value = given[0]
    field = {"interval": "seconds", "cron": "expression", "date": "run_at"}[kind]
    return {"kind": kind, field: value}


@app.command("schedule")
def jobs_schedule(
    name: Annotated[str, typer.Argument(help="A name for people, e.g. heartbeat.")],
    every: Annotated[float | None, typer.Option(help="Fire every this many seconds.")] = None,
    cron: Annotated[str | None, typer.Option(help="Fire on a crontab, e.g. '*/5 * * * *'.")] = None,
    at: Annotated[
        str | None, typer.Option(help="Fire once at this ISO time, with a timezone.")
    ] = None,
    action: Annotated[str, typer.Option(help="The action each fire performs.")] = "notify",
    param: Params = None,
    misfire: Annotated[
        str | None,
        typer.Option(help="Fires due while Janus was down: skip, run_once or catch_up."),
    ] = None,
    max_catch_up: Annotated[
        int | None, typer.Option(help="With catch_up: run at most this many missed fires.")
    ] = None,
    overlap: Annotated[
        str | None,
        typer.Option(help="A time that comes while the previous fire runs: skip or queue."),
    ] = None,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Schedule a job; exactly one of --every, --cron and --at says when it fires."""
    with cli_errors():
        payload: dict[str, Any] = {
            "name": name,
            "trigger": _trigger(every, cron, at),
            "action": {"name": action, "parameters": parse_params(param)},
        }
        if misfire is not None:
            payload["misfire_policy"] = misfire
        if max_catch_up is not None:
            payload["max_catch_up"] = max_catch_up
        if overlap is not None:
            payload["overlap"] = overlap
        cmd = m.ScheduleJob.model_validate(payload)
        with open_janus() as janus:
            result = janus.commands.schedule_job(cmd, invocation(key=idempotency_key))
    print_written("job", result, as_json)


@app.command("fires")
def jobs_fires(
    job_id: Annotated[str, typer.Argument(help="The job whose fires to show.")],
    as_json: JsonFlag = False,
) -> None:
    """List a job's fires, oldest first: succeeded, failed, missed or of unknown outcome."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.jobs, job_id)
        fresh(janus)
        if not any(row["id"] == str(ident) for row in janus.views.jobs(include_removed=True)):
            raise NotFound("job", ident)
        rows = janus.views.fires(ident)
        scheduler = runtime_status(janus).scheduler_running
    if as_json:
        typer.echo(render.to_json(rows))
        return
    out().print(render.fires_table(rows))
    if scheduler is False:
        out().print(f"{'no fires yet; ' if not rows else ''}{NO_SCHEDULER}")


JobId = Annotated[str, typer.Argument(help="The job to change.")]


@app.command("pause")
def jobs_pause(job_id: JobId) -> None:
    """Pause a job: it stops firing until resumed."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.jobs, job_id)
        result = janus.commands.pause_job(m.PauseJob(job_id=ident), invocation())
    print_outcome("job", result)


@app.command("resume")
def jobs_resume(job_id: JobId) -> None:
    """Resume a paused job."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.jobs, job_id)
        result = janus.commands.resume_job(m.ResumeJob(job_id=ident), invocation())
    print_outcome("job", result)


@app.command("remove")
def jobs_remove(job_id: JobId) -> None:
    """Remove a job for good; its fires stay in the log."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.jobs, job_id)
        result = janus.commands.remove_job(m.RemoveJob(job_id=ident), invocation())
    print_outcome("job", result)
