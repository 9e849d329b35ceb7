"""``janus demo``: the main story told end to end (the story itself is ``bootstrap/demo.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bootstrap.demo import DEFAULT_HOME, run_demo
from cli.common import debug_requested


def demo(
    home: Annotated[
        Path, typer.Option(help="Where the demo keeps its data; wiped at the start.")
    ] = DEFAULT_HOME,
    fast: Annotated[
        bool, typer.Option("--fast", help="Shorter waits (used by the tests).")
    ] = False,
) -> None:
    """Tell the main story: a hazardous action survives a crash and runs exactly once."""
    raise typer.Exit(run_demo(home, fast=fast, debug=debug_requested()))
