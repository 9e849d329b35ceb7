"""``janus``: the operator's command line. Thin: parse, call one command service or view, print.

Each invocation builds its own Janus from settings (``JANUS_*``), so it works beside a running
``janus run`` process as well as alone on the embedded store. One module per command group;
this one only mounts them (a flat list, one line each) under the root's error boundary.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import (
    agent,
    audit,
    confirmations,
    demo,
    documents,
    edge,
    effects,
    events,
    extract,
    goals,
    jobs,
    keys,
    project,
    projections,
    relay,
    replay,
    run,
    search,
    serve,
)
from cli.common import Boundary

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, cls=Boundary)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Janus: durable goals, decisions, confirmations, effects and jobs, from the terminal.

    Settings come from JANUS_* variables; with none set, Janus runs embedded under ./.janus.
    Tables show ids shortened; commands take a full id or any unique prefix of one.
    """


app.command("run")(run.run)
app.command("demo")(demo.demo)
app.add_typer(goals.app, name="goals")
app.add_typer(confirmations.app, name="confirmations")
app.add_typer(jobs.app, name="jobs")
app.add_typer(effects.app, name="effects")
app.command("relay")(relay.relay)
app.command("project")(project.project)
app.command("serve")(serve.serve_command)
app.add_typer(projections.app, name="projections")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(events.app, name="events")
app.add_typer(replay.app, name="replay")
app.add_typer(agent.app, name="agent")
app.add_typer(extract.app, name="extract")
app.command("ingest")(documents.ingest_command)
app.add_typer(documents.app, name="documents")
app.add_typer(edge.app, name="edge")
app.command("search")(search.search)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
