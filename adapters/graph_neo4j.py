"""`Neo4jGraphStore`: the graph view on Neo4j 5, through the official `neo4j` driver (Bolt).

Neo4j Community holds one user database, so a namespace is a label, not a database: every view
node of namespace `ns` carries `JanusNode_ns` (unique on `id`, which also indexes it) beside its own
label, and the shared Cypher (adapters/graph_cypher.py) scopes every match by it. The position and
the namespace's existence live in a `JanusMeta {namespace}` node, and an alias is a `JanusAlias
{name, target}` node whose `target` one write switches, atomically, for every reader.

No Neo4j server can run on the development machines: the contract suite runs here only when
`JANUS_TEST_NEO4J_URL` names one (e.g. `neo4j://neo4j:secret@127.0.0.1:7687`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import DriverError, Neo4jError

from adapters.graph_cypher import BASE_PREFIX, META_LABEL, CypherGraphStore, Row
from adapters.graph_model import GraphStoreError, InvalidGraphInput, NamespaceNotFound, check_name

__all__ = ["Neo4jGraphStore"]

ALIAS_LABEL = "JanusAlias"
DROP_BATCH = 10_000
GLOBAL_SCHEMA = (
    f"CREATE CONSTRAINT janus_meta IF NOT EXISTS FOR (m:{META_LABEL}) "
    "REQUIRE m.namespace IS UNIQUE",
    f"CREATE CONSTRAINT janus_alias IF NOT EXISTS FOR (a:{ALIAS_LABEL}) REQUIRE a.name IS UNIQUE",
)


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user:password, and those as the driver's basic auth (if given)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts._replace(netloc=netloc).geturl(), (parts.username, parts.password or "")


class Neo4jGraphStore(CypherGraphStore):
    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        database: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size)
        address, url_auth = _split_credentials(url)
        self.url = address
        self.database = database
        self._driver: Driver = GraphDatabase.driver(address, auth=auth or url_auth)
        self._known: set[str] = set()
        self._schema_ready = False

    def _base(self, namespace: str) -> str:
        return f"{BASE_PREFIX}_{namespace}"

    def _query(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            result = self._driver.execute_query(query, dict(params or {}), database_=self.database)
        except (Neo4jError, DriverError) as exc:
            raise GraphStoreError(f"Neo4j at {self.url}: {exc}") from exc
        return [list(record.values()) for record in result.records]

    def _run(
        self, namespace: str, query: str, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        return self._query(query, params)

    def _schema(self, statement: str) -> None:
        # Schema changes run in an auto-commit transaction of their own.
        try:
            with self._driver.session(database=self.database) as session:
                session.run(statement).consume()
        except (Neo4jError, DriverError) as exc:
            raise GraphStoreError(f"Neo4j at {self.url}: {exc}") from exc

    # --- namespaces ----------------------------------------------------------------------------

    def _exists(self, namespace: str) -> bool:
        if namespace in self._known:
            return True
        rows = self._query(
            f"MATCH (m:{META_LABEL} {{namespace: $ns}}) RETURN count(m)", {"ns": namespace}
        )
        found = bool(rows and rows[0][0])
        if found:
            self._known.add(namespace)
        return found

    def ensure_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        if self.alias_target(namespace) is not None:
            raise InvalidGraphInput("namespace", f"{namespace!r} is an alias")
        if not self._schema_ready:
            for statement in GLOBAL_SCHEMA:
                self._schema(statement)
            self._schema_ready = True
        if self._exists(namespace):
            return False
        base = self._base(namespace)
        self._schema(
            f"CREATE CONSTRAINT janus_node_{namespace} IF NOT EXISTS "
            f"FOR (n:{base}) REQUIRE n.id IS UNIQUE"
        )
        # The meta node last: a namespace exists once its constraint is in place.
        self._query(f"MERGE (:{META_LABEL} {{namespace: $ns}})", {"ns": namespace})
        self._known.add(namespace)
        return True

    def namespaces(self) -> list[str]:
        rows = self._query(f"MATCH (m:{META_LABEL}) RETURN m.namespace ORDER BY m.namespace")
        return [r[0] for r in rows]

    def drop_namespace(self, namespace: str) -> bool:
        check_name(namespace, "namespace")
        self._known.discard(namespace)
        self._query(f"MATCH (a:{ALIAS_LABEL} {{target: $ns}}) DELETE a", {"ns": namespace})
        if not self._exists(namespace):
            return False
        self._known.discard(namespace)
        # In slices, so a large namespace never needs one huge transaction; the meta node goes
        # last, so a crash midway leaves a namespace that a second drop finishes.
        delete = (
            f"MATCH (n:{self._base(namespace)}) WITH n LIMIT {DROP_BATCH} "
            "DETACH DELETE n RETURN count(*)"
        )
        deleted = self._count(namespace, delete)
        while deleted:
            deleted = self._count(namespace, delete)
        self._schema(f"DROP CONSTRAINT janus_node_{namespace} IF EXISTS")
        self._query(f"MATCH (m:{META_LABEL} {{namespace: $ns}}) DELETE m", {"ns": namespace})
        return True

    def set_alias(self, alias: str, namespace: str) -> None:
        check_name(alias, "alias")
        check_name(namespace, "namespace")
        if self._exists(alias):
            raise InvalidGraphInput("alias", f"{alias!r} is a namespace")
        if not self._exists(namespace):
            raise NamespaceNotFound(namespace)
        self._query(
            f"MERGE (a:{ALIAS_LABEL} {{name: $alias}}) SET a.target = $ns",
            {"alias": alias, "ns": namespace},
        )

    def alias_target(self, alias: str) -> str | None:
        check_name(alias, "alias")
        rows = self._query(
            f"MATCH (a:{ALIAS_LABEL} {{name: $alias}}) RETURN a.target", {"alias": alias}
        )
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        self._driver.close()
