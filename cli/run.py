"""``janus run``: the all-in-one process (views, executor, expiry, scheduler) until stopped."""

from __future__ import annotations

from bootstrap import main as bootstrap_main
from cli.common import cli_errors


def run() -> None:
    """Run the all-in-one Janus process (views, executor, expiry, scheduler) until stopped."""
    with cli_errors():
        bootstrap_main.main()
