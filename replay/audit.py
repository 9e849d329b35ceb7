"""Carved into replay/values.py, replay/store.py, replay/story.py, replay/search.py and
event_store/events_table.py; these names stay importable from here only until the CLI modules
that use them (being moved to cli/ in another branch) import from those modules directly."""

from event_store.events_table import EventTable
from replay.search import Criteria, search
from replay.store import ProgressFn, Store, UnreadableEvent, topics_for
from replay.story import Node, causation_tree, event_line_json, flatten, goal_story, tree_json
from replay.values import (
    BadInput,
    aggregate_json,
    aware,
    event_json,
    event_summary,
    one_line,
    parse_point,
    parse_position,
    plain,
    short,
)

__all__ = [
    "BadInput",
    "Criteria",
    "EventTable",
    "Node",
    "ProgressFn",
    "Store",
    "UnreadableEvent",
    "aggregate_json",
    "aware",
    "causation_tree",
    "event_json",
    "event_line_json",
    "event_summary",
    "flatten",
    "goal_story",
    "one_line",
    "parse_point",
    "parse_position",
    "plain",
    "search",
    "short",
    "topics_for",
    "tree_json",
]
