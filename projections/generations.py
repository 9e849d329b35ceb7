"""Where each knowledge view's generations live in its target, and which one readers see.

The vector view: collections ``chunks__<model>-<digest>__g<N>`` behind the alias ``chunks``; the
object view: prefixes ``views/objects/g<N>`` named by the pointer ``views/objects/live.json``; the
graph view: namespaces ``graph_g<N>`` behind the alias ``graph``. A switch is one atomic step of
the target (an alias update, one object overwritten whole), so readers see the old generation or
the new one, never a mix. ``KnowledgeProjection`` is what the three projections have in common.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol
from uuid import UUID

from adapters.blobs import BlobNotFound, BlobStore
from adapters.graph import GraphStore
from adapters.vectors import VectorIndex
from event_store.reader import LoggedEvent
from projections.graph import GraphProjection
from projections.objects import ObjectProjection
from projections.vector import VectorProjection

__all__ = [
    "Checked",
    "Generations",
    "GraphGenerations",
    "KnowledgeProjection",
    "ObjectGenerations",
    "VectorGenerations",
    "graph_view",
]


class Checked(Protocol):
    @property
    def clean(self) -> bool: ...


class KnowledgeProjection(Protocol):
    """What ObjectProjection, VectorProjection and GraphProjection have in common."""

    name: ClassVar[str]
    failed: dict[UUID, str | None]

    def start(self) -> int: ...

    @property
    def position(self) -> int: ...

    def apply(self, events: Sequence[LoggedEvent]) -> int: ...

    def verify(self, events: Iterable[LoggedEvent]) -> Checked: ...


class Generations(ABC):
    """Where a view's generations live in its target, and which one readers see."""

    name: ClassVar[str]

    @abstractmethod
    def live(self) -> str | None:
        """The live generation's target (collection, prefix, namespace); None before any."""

    @abstractmethod
    def target(self, generation: int) -> str: ...

    @abstractmethod
    def open(self, target: str) -> KnowledgeProjection: ...

    @abstractmethod
    def switch(self, target: str) -> None:
        """Make ``target`` the live generation in one atomic step."""

    @abstractmethod
    def drop(self, target: str) -> None: ...

    @property
    @abstractmethod
    def pattern(self) -> str:
        """A regex with one group, the generation number, matching this view's targets."""

    def generation_of(self, target: str | None) -> int | None:
        """The generation a target holds, None when it is not one of ours (say, another model's
        collection: then the view must be built again for this one)."""
        found = re.fullmatch(self.pattern, target or "")
        return int(found.group(1)) if found else None


class VectorGenerations(Generations):
    """Collections ``chunks__<model>-<digest>__g<N>`` behind the alias ``chunks``."""

    name = "vector"

    def __init__(self, index: VectorIndex, make: Callable[[str | None], VectorProjection]) -> None:
        self.index = index
        self.make = make
        template = make(None)
        self.alias, self.base = template.alias, template.base

    @property
    def pattern(self) -> str:
        return rf"{re.escape(self.base)}__g(\d+)"

    def live(self) -> str | None:
        return self.index.alias_target(self.alias)

    def target(self, generation: int) -> str:
        return f"{self.base}__g{generation}"

    def open(self, target: str) -> VectorProjection:
        return self.make(target)

    def switch(self, target: str) -> None:
        self.index.set_alias(self.alias, target)

    def drop(self, target: str) -> None:
        self.index.drop(target)


class ObjectGenerations(Generations):
    """Prefixes ``views/objects/g<N>``; the live one named by ``views/objects/live.json``."""

    name = "objects"
    root = "views/objects"

    def __init__(self, blobs: BlobStore, make: Callable[[str], ObjectProjection]) -> None:
        self.blobs = blobs
        self.make = make

    @property
    def pattern(self) -> str:
        return rf"{re.escape(self.root)}/g(\d+)"

    @property
    def pointer(self) -> str:
        return f"{self.root}/live.json"

    def live(self) -> str | None:
        try:
            return str(self.blobs.get_json(self.pointer)["prefix"])
        except BlobNotFound:
            return None

    def target(self, generation: int) -> str:
        return f"{self.root}/g{generation}"

    def open(self, target: str) -> ObjectProjection:
        return self.make(target)

    def switch(self, target: str) -> None:
        # One object overwritten whole: readers see the old prefix or the new one.
        position = self.make(target).start()
        self.blobs.put_json(
            self.pointer, {"prefix": target}, event_id=UUID(int=0), position=position
        )

    def drop(self, target: str) -> None:
        for key in list(self.blobs.list_keys(f"{target}/")):
            self.blobs.delete(key)


class _GraphView(GraphProjection):
    failed: dict[UUID, str | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The graph shows a document without text as a node without chunks; the object and
        # vector views name the reason.
        self.failed = {}


class GraphGenerations(Generations):
    """Namespaces ``graph_g<N>`` behind the alias ``graph``."""

    name = "graph"
    alias = "graph"

    def __init__(self, store: GraphStore, make: Callable[..., KnowledgeProjection]) -> None:
        self.store = store
        self.make = make

    @property
    def pattern(self) -> str:
        return rf"{self.alias}_g(\d+)"

    def live(self) -> str | None:
        return self.store.alias_target(self.alias)

    def target(self, generation: int) -> str:
        return f"{self.alias}_g{generation}"

    def open(self, target: str) -> KnowledgeProjection:
        return self.make(namespace=target)

    def switch(self, target: str) -> None:
        self.store.set_alias(self.alias, target)

    def drop(self, target: str) -> None:
        self.store.drop_namespace(target)


def graph_view(*args: Any, **kwargs: Any) -> KnowledgeProjection:
    """A GraphProjection with the ``failed`` map the runner reads (always empty)."""
    return _GraphView(*args, **kwargs)
