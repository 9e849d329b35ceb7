"""Idempotency-Key: a retried POST or DELETE gets the first response, byte for byte.

Two layers. The command services already make a keyed command idempotent: the first answer is
saved atomically with the command's events, so a retry writes nothing and cannot execute anything
twice. That answer (id and outcome) does not hold the log position the first response reported,
so the first HTTP response is also kept here, in a small table beside the views, and replayed
as it was. The table is a cache of answers, not a source of truth: if a response was lost (a
crash after the command committed), the retry is answered from the command record instead, with
the same id and outcome and a position at or after the first one.

Keys are scoped to the API key that sent them, so two clients can never collide.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, ProgrammingError

metadata = MetaData()

api_responses = Table(
    "api_responses",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("location", String(300)),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

PRUNE_EVERY = 1_000
# Built once: a statement built per call costs SQLAlchemy more than the round trip it makes.
_SELECT = select(api_responses).where(
    api_responses.c.scope == bindparam("scope"), api_responses.c.key == bindparam("key")
)
_INSERT = api_responses.insert()


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: str
    location: str | None


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """Same request, same fingerprint: JSON bodies are compared by content, not by layout."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256(f"{method} {path}?{query}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


class ResponseStore:
    def __init__(self, engine: Engine, retention: timedelta) -> None:
        self.engine = engine
        self.retention = retention
        self._inserts = 0

    def setup(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (IntegrityError, ProgrammingError):
            # Another process created it between our check and our CREATE: it exists now.
            metadata.create_all(self.engine)
        self.prune()

    def get(self, scope: str, key: str) -> StoredResponse | None:
        with self.engine.connect() as conn:
            row = conn.execute(_SELECT, {"scope": scope, "key": key}).first()
        if row is None:
            return None
        return StoredResponse(row.fingerprint, row.status, row.body, row.location)

    def put(self, scope: str, key: str, response: StoredResponse) -> StoredResponse:
        """Keep this response unless one is already kept for the key; return the kept one."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _INSERT,
                    {
                        "scope": scope,
                        "key": key,
                        "fingerprint": response.fingerprint,
                        "status": response.status,
                        "body": response.body,
                        "location": response.location,
                        "created_at": datetime.now(UTC),
                    },
                )
        except IntegrityError:
            kept = self.get(scope, key)
            if kept is None:
                raise
            return kept
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self.prune()
        return response

    def prune(self) -> int:
        cutoff = datetime.now(UTC) - self.retention
        with self.engine.begin() as conn:
            return conn.execute(
                delete(api_responses).where(api_responses.c.created_at < cutoff)
            ).rowcount
