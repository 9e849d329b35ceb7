"""``janus confirmations``: answer hazardous actions waiting for a human."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bootstrap.status import NO_EXECUTOR, runtime_status
from cli.common import (
    ActorName,
    IdempotencyKey,
    JsonFlag,
    cli_errors,
    fresh,
    invocation,
    open_janus,
    out,
    print_outcome,
    resolve,
)
from commands import models as m
from projections import relational
from replay import render

app = typer.Typer(no_args_is_help=True, help="Answer hazardous actions waiting for a human.")


@app.command("list")
def confirmations_list(
    status: Annotated[
        str, typer.Option(help="pending, granted, denied, expired, cancelled or all.")
    ] = "pending",
    as_json: JsonFlag = False,
) -> None:
    """List confirmations with their deadlines and the time left to answer."""
    with cli_errors(), open_janus() as janus:
        fresh(janus)
        rows = janus.views.confirmations(None if status == "all" else status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    out().print(render.confirmations_table(rows, datetime.now(UTC)))


@app.command("grant")
def confirmations_grant(
    confirmation_id: Annotated[str, typer.Argument(help="The confirmation to grant.")],
    actor_name: ActorName = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Grant a pending confirmation: the executor then performs its action, once."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.confirmations, confirmation_id)
        result = janus.commands.grant_confirmation(
            m.GrantConfirmation(confirmation_id=ident), invocation(actor_name, idempotency_key)
        )
        running = runtime_status(janus).executor_running
    print_outcome("confirmation", result)
    if running is False:
        out().print(f"queued: {NO_EXECUTOR}")


@app.command("deny")
def confirmations_deny(
    confirmation_id: Annotated[str, typer.Argument(help="The confirmation to deny.")],
    reason: Annotated[str, typer.Option(help="Why the action must not happen.")],
    actor_name: ActorName = None,
) -> None:
    """Deny a pending confirmation: its action will never run."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.confirmations, confirmation_id)
        cmd = m.DenyConfirmation(confirmation_id=ident, reason=reason)
        result = janus.commands.deny_confirmation(cmd, invocation(actor_name))
    print_outcome("confirmation", result)
