"""`janus audit goal ID --graph`: the goal's provenance subgraph from the graph view.

Typer code lives in the audit command; this reads the graph and prints it (JSON, Mermaid, DOT).
The embedded graph (ladybug) is opened by one process at a time: while `janus run` holds it, the
command says so in one line (read it through `GET /v1/goals/{id}/graph` instead).
"""

from __future__ import annotations

import sys
from uuid import UUID

from adapters.graph import GraphStoreError, NamespaceNotFound
from bootstrap.knowledge import build_graph_store
from bootstrap.settings import Settings
from projections.graph_queries import (
    GoalNotInGraph,
    GraphFormat,
    goal_provenance,
    render_provenance,
)
from replay.values import BadInput

__all__ = ["GraphFormat", "print_goal_graph"]


def print_goal_graph(goal_id: UUID, fmt: GraphFormat, settings: Settings | None = None) -> None:
    """Print the goal's provenance; BadInput (one line, exit 1) when there is none to print."""
    try:
        store = build_graph_store(settings or Settings())
    except GraphStoreError as error:
        raise BadInput(f"graph view unavailable: {str(error).splitlines()[0]}") from None
    try:
        sub = goal_provenance(store, str(goal_id))
    except NamespaceNotFound:
        raise BadInput("the graph view has not been built yet") from None
    except GoalNotInGraph as missing:
        raise BadInput(str(missing)) from None
    except GraphStoreError as error:
        raise BadInput(f"graph view unavailable: {str(error).splitlines()[0]}") from None
    finally:
        store.close()
    sys.stdout.write(render_provenance(str(goal_id), sub, fmt))
