"""``janus effects``: what granted actions did to the world, and an operator's word on one."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import (
    ActorName,
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

app = typer.Typer(no_args_is_help=True, help="What granted actions did to the world.")


@app.command("list")
def effects_list(
    status: Annotated[
        str | None,
        typer.Option(help="started, succeeded, failed, outcome_unknown or reconciled."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List effects: each granted action and what became of it."""
    with cli_errors(), open_janus() as janus:
        fresh(janus)
        rows = janus.views.effects(status)
    if as_json:
        typer.echo(render.to_json(rows))
        return
    out().print(render.effects_table(rows))


@app.command("reconcile")
def effects_reconcile(
    effect_id: Annotated[str, typer.Argument(help="An effect whose outcome is unknown.")],
    happened: Annotated[
        bool,
        typer.Option(
            "--happened/--did-not-happen", help="What you found out in the world (required)."
        ),
    ],
    note: Annotated[str, typer.Option(help="How you know, for the audit trail.")] = "",
    actor_name: ActorName = None,
) -> None:
    """Record an operator's word on an effect nobody else could vouch for."""
    with cli_errors(), open_janus() as janus:
        ident = resolve(janus, relational.effects, effect_id)
        cmd = m.ReconcileEffect(effect_id=ident, happened=happened, note=note)
        result = janus.commands.reconcile_effect(cmd, invocation(actor_name))
    print_outcome("effect", result)
