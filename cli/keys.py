"""``janus keys``: API keys for the HTTP API. Only a key's hash is stored; the key is printed once.

Whoever can run this against the store is trusted as an admin: it acts on the event store
directly, like the rest of the CLI, and records the operating-system user as the actor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.common import ActorName, JsonFlag, cli_errors, invocation
from commands.keys import CreateApiKey, KeyInfo, KeyService, RevokeApiKey
from domain.api_key import Role
from replay import render

app = typer.Typer(no_args_is_help=True, help="API keys for the HTTP API: create, revoke, list.")


@contextmanager
def _keys() -> Iterator[KeyService]:
    janus = Janus.for_cli(Settings())
    try:
        yield KeyService(janus.commands.runner)
    finally:
        janus.close()


def _as_dict(info: KeyInfo) -> dict[str, str | None]:
    return {
        "id": str(info.id),
        "name": info.name,
        "role": info.role.value,
        "status": info.status.value,
        "created_at": info.created_at.isoformat(),
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


@app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="A unique name, e.g. ci-bot (lowercase, digits, . _ -).")
    ],
    role: Annotated[
        Role,
        typer.Option(help="viewer, operator, approver or admin (each includes the ones before)."),
    ],
    actor_name: ActorName = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print it once: only its hash is stored, it cannot be shown again."""
    with cli_errors():
        cmd = CreateApiKey.model_validate({"name": name, "role": role})
        with _keys() as keys:
            issued = keys.create_key(cmd, invocation(actor_name, role=Role.ADMIN.value))
    if as_json:
        typer.echo(json.dumps({**_as_dict(issued.info), "key": issued.token}, indent=2))
        return
    typer.echo(issued.token)
    Console(stderr=True, highlight=False).print(
        f"key {escape(name)} ({role.value}) created; it is shown only this once. "
        "Send it as 'Authorization: Bearer <key>'."
    )


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's name or id.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "revoked",
    actor_name: ActorName = None,
) -> None:
    """Revoke a key. Servers stop accepting it within their key cache time (2 s by default)."""
    with cli_errors(), _keys() as keys:
        info = keys.find(key)
        result = keys.revoke_key(
            RevokeApiKey(key_id=info.id, reason=reason),
            invocation(actor_name, role=Role.ADMIN.value),
        )
    Console(highlight=False).print(f"key {escape(info.name)} {result.outcome}")


@app.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """List every key ever created: name, id, role, status. Never the key, never its hash."""
    with cli_errors(), _keys() as keys:
        infos = keys.list_keys()
    if as_json:
        typer.echo(json.dumps([_as_dict(info) for info in infos], indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "id", "role", "status", "created", "revoked"):
        table.add_column(column)
    for info in infos:
        table.add_row(
            escape(info.name),
            render.short(str(info.id)),
            info.role.value,
            info.status.value,
            render.when(info.created_at),
            render.when(info.revoked_at),
        )
    Console(highlight=False).print(table)
