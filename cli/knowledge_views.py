"""``janus projections rebuild|verify objects|vector|graph``: the knowledge views' part.

Called by the projections commands for these names. The command runs the rebuild or verify in
this process, so it needs the view's target: with the embedded Qdrant folder that is refused
(one line naming the process holding it) while `janus serve`, `janus run` or `janus project`
has it open; stop that process, or use a Qdrant server (JANUS_QDRANT_URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from bootstrap.container import Janus
from cli.common import cli_errors, fail, open_janus
from projections.rebuild import rich_progress
from projections.registry import TargetUnavailable
from projections.runner import ProjectionStalled
from projections.vector import Drift


@contextmanager
def _view(name: str) -> Iterator[Janus]:
    with cli_errors(), open_janus() as janus:
        try:
            janus.knowledge_views[name].setup()
            yield janus
        except (TargetUnavailable, ProjectionStalled) as error:
            fail(f"{name}: {error}")


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with rich_progress(console, description) as progress:
        yield progress


def rebuild(name: str) -> None:
    with _view(name) as janus, _progress(f"rebuilding {name}") as progress:
        result = janus.knowledge_views[name].rebuild(progress)
    replaced = f", replacing {result.replaced}" if result.replaced else ""
    Console(highlight=False).print(
        f"{name}: generation {result.generation} ({result.target}) is live at position "
        f"{result.position}{replaced}"
    )


def verify(name: str, as_json: bool) -> None:
    with _view(name) as janus:
        position, drift = janus.knowledge_views[name].verify()
    ok = drift.clean
    summary = (
        f"{name} matches the log at position {position}"
        if ok
        else f"{name} differs from the log at position {position}: {_counts(drift)}"
    )
    if as_json:
        typer.echo(
            json.dumps(
                {"name": name, "position": position, "ok": ok, "drift": _as_dict(drift)},
                indent=2,
                default=str,
            )
        )
    else:
        Console(highlight=False).print(summary)
    if not ok:
        fail(summary)


def _as_dict(drift: Any) -> dict[str, Any]:
    return {key: [str(v) for v in value] for key, value in vars(drift).items()}


def _counts(drift: Any) -> str:
    parts = [f"{len(value)} {key.replace('_', ' ')}" for key, value in vars(drift).items() if value]
    return ", ".join(parts)


__all__ = ["Drift", "rebuild", "verify"]
