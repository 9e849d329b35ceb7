"""Answers read from the graph view: a goal's provenance subgraph, as JSON, Mermaid or DOT.

A goal's provenance is what led to and came from it, along the edges the graph projection writes:

    Goal -[:DECIDED]-> Decision -[:REQUESTED]-> Confirmation -[:AUTHORISED]-> Effect
    Goal -[:REQUESTED]-> Confirmation            (asked for outside any recorded decision)
    Decision -[:USED_CONTEXT]-> Chunk <-[:HAS_CHUNK]- Document
    Chunk -[:MENTIONS]-> Entity, and RELATES between the entities reached

Only these edges are followed, and only in these directions, so another goal that used the same
chunk, or the document's other chunks, are not part of this goal's answer. Every node and edge
keeps the event id and log position that last wrote it: each fact can be found in the log.
`GET /v1/goals/{id}/graph` and `janus audit goal ID --graph` both call `goal_provenance`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from adapters.graph import EdgeKey, GraphEdge, GraphNode, GraphStore, NodeNotFound, Subgraph
from projections.graph import DEFAULT_NAMESPACE, RELATES

__all__ = [
    "GoalNotInGraph",
    "GraphFormat",
    "goal_provenance",
    "provenance_dot",
    "provenance_json",
    "provenance_mermaid",
    "render_provenance",
]

# (from label, edge type, to label, walked along the edge or against it)
STEPS: tuple[tuple[str, str, str, bool], ...] = (
    ("Goal", "DECIDED", "Decision", True),
    ("Goal", "REQUESTED", "Confirmation", True),
    ("Decision", "REQUESTED", "Confirmation", True),
    ("Confirmation", "AUTHORISED", "Effect", True),
    ("Decision", "USED_CONTEXT", "Chunk", True),
    ("Chunk", "HAS_CHUNK", "Document", False),
    ("Chunk", "MENTIONS", "Entity", True),
)
# Goal -> Decision -> Chunk -> Document or Entity: three hops reach every node of the answer.
DEPTH = 3
CAPTION = 60


class GraphFormat(StrEnum):
    JSON = "json"
    MERMAID = "mermaid"
    DOT = "dot"


class GoalNotInGraph(LookupError):
    def __init__(self, goal_id: str) -> None:
        super().__init__(f"goal {goal_id} is not in the graph view (yet)")
        self.goal_id = goal_id


def goal_provenance(store: GraphStore, goal_id: str, graph: str = DEFAULT_NAMESPACE) -> Subgraph:
    """The goal's provenance subgraph (see the module doc); raises GoalNotInGraph."""
    try:
        around = store.subgraph(graph, goal_id, depth=DEPTH)
    except NodeNotFound:
        raise GoalNotInGraph(goal_id) from None
    nodes = {n.id: n for n in around.nodes}
    if nodes[goal_id].label != "Goal":
        raise GoalNotInGraph(goal_id)
    kept, edges = _walk(nodes, around.edges, goal_id)
    edges += [
        e for e in around.edges if e.type == RELATES and e.source in kept and e.target in kept
    ]
    return Subgraph(
        sorted((nodes[i] for i in kept), key=lambda n: (n.position, n.id)),
        sorted(edges, key=lambda e: (e.position, e.key)),
    )


def _walk(
    nodes: Mapping[str, GraphNode], edges: list[GraphEdge], start: str
) -> tuple[set[str], list[GraphEdge]]:
    touching: dict[str, list[GraphEdge]] = {}
    for edge in edges:
        touching.setdefault(edge.source, []).append(edge)
        touching.setdefault(edge.target, []).append(edge)
    kept = {start}
    taken: dict[EdgeKey, GraphEdge] = {}
    frontier = [start]
    while frontier:
        here = frontier.pop()
        label = nodes[here].label
        for edge in touching.get(here, []):
            for source_label, edge_type, target_label, forward in STEPS:
                near, far = (edge.source, edge.target) if forward else (edge.target, edge.source)
                if (source_label, edge_type, near) != (label, edge.type, here):
                    continue
                if far not in nodes or nodes[far].label != target_label:
                    continue
                taken[edge.key] = edge
                if far not in kept:
                    kept.add(far)
                    frontier.append(far)
    return kept, list(taken.values())


# --- rendering ---------------------------------------------------------------------------------


def caption(node: GraphNode) -> str:
    """One line naming the node for people: its label and its telling property."""
    props = node.properties
    detail = {
        "Goal": props.get("text"),
        "Decision": props.get("action"),
        "Confirmation": f"{props.get('action', '')} ({props.get('status', '')})",
        "Effect": f"{props.get('action', '')} ({props.get('status', '')})",
        "Chunk": f"#{props.get('index', '')} {props.get('text', '')}",
        "Document": props.get("source_uri"),
        "Entity": f"{props.get('name', '')} ({props.get('type', '')})",
    }.get(node.label, node.id)
    text = " ".join(str(detail or "").split())
    if len(text) > CAPTION:
        text = text[: CAPTION - 1] + "…"
    return f"{node.label}: {text}" if text else node.label


def provenance_json(goal_id: str, sub: Subgraph) -> dict[str, Any]:
    return {
        "goal_id": goal_id,
        "nodes": [
            {
                "id": n.id,
                "label": n.label,
                "event_id": n.event_id,
                "position": n.position,
                "properties": dict(n.properties),
            }
            for n in sub.nodes
        ],
        "edges": [
            {
                "source": e.source,
                "type": e.type,
                "target": e.target,
                "event_id": e.event_id,
                "position": e.position,
                "properties": dict(e.properties),
            }
            for e in sub.edges
        ],
    }


def _edge_caption(edge: GraphEdge) -> str:
    if edge.type == RELATES and edge.properties.get("type"):
        return f"{edge.type} {edge.properties['type']}"
    return edge.type


def provenance_mermaid(sub: Subgraph) -> str:
    """A Mermaid flowchart; node keys are n0, n1, ... (ids are not Mermaid identifiers)."""
    keys = {n.id: f"n{i}" for i, n in enumerate(sub.nodes)}
    lines = ["flowchart LR"]
    for node in sub.nodes:
        lines.append(f'    {keys[node.id]}["{_mermaid_text(caption(node))}"]')
    for edge in sub.edges:
        label = _mermaid_text(_edge_caption(edge))
        lines.append(f'    {keys[edge.source]} -->|"{label}"| {keys[edge.target]}')
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid's entity codes: a quote, a bar or brackets inside a label would end it.
    for raw, code in (
        ("&", "#amp;"),
        ('"', "#quot;"),
        ("|", "#124;"),
        ("<", "#lt;"),
        (">", "#gt;"),
    ):
        text = text.replace(raw, code)
    return text


def provenance_dot(sub: Subgraph) -> str:
    """A Graphviz digraph; node ids are the graph's ids, quoted."""
    lines = ["digraph provenance {", "    rankdir=LR;", "    node [shape=box];"]
    for node in sub.nodes:
        lines.append(f"    {_dot(node.id)} [label={_dot(caption(node))}];")
    for edge in sub.edges:
        lines.append(
            f"    {_dot(edge.source)} -> {_dot(edge.target)} [label={_dot(_edge_caption(edge))}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a DOT string: quotes and backslashes escaped


def render_provenance(goal_id: str, sub: Subgraph, fmt: GraphFormat) -> str:
    if fmt is GraphFormat.MERMAID:
        return provenance_mermaid(sub)
    if fmt is GraphFormat.DOT:
        return provenance_dot(sub)
    return json.dumps(provenance_json(goal_id, sub), indent=2) + "\n"
