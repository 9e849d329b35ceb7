"""``janus demo``: the main story told end to end (the story itself is ``replay/demo.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import debug_requested
from replay.demo import DEFAULT_HOME, run_demo


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
