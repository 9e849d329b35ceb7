"""Who is calling: API keys sent as ``Authorization: Bearer``, and the role each endpoint needs.

A refused request is answered 401 (no or bad credentials) or 403 (role too low), counted in the
``janus.api.auth.denied`` metric and recorded nowhere else. Neither the key nor its hash ever
reaches a log line, an event or an error body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from opentelemetry.metrics import Counter

from api.problems import ApiProblem
from commands.errors import NotFound
from commands.keys import KeyInfo, KeyService
from domain.api_key import Role
from domain.meta import Actor, ActorKind

MAX_CACHED = 10_000


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    key_id: UUID | None

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind.USER, self.name, self.role.value)

    @property
    def scope(self) -> str:
        """Idempotency keys are scoped by this, so two clients never share one."""
        return self.key_id.hex if self.key_id else "local"


LOCAL_ADMIN = Principal("local", Role.ADMIN, None)


class KeyVerifier:
    """Checks keys against the event store, trusting an answer for ``ttl`` seconds.

    Unknown key ids are remembered too, so a flood of made-up keys costs one read per id per
    ``ttl``, not one per request.
    """

    def __init__(
        self, keys: KeyService, ttl: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = keys
        self.ttl = ttl
        self._now = now
        self._cache: dict[UUID, tuple[float, KeyInfo | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key_id: UUID) -> tuple[bool, KeyInfo | None]:
        entry = self._cache.get(key_id)
        if entry is None or entry[0] < self._now():
            return False, None
        return True, entry[1]

    def load(self, key_id: UUID) -> KeyInfo | None:
        try:
            info: KeyInfo | None = self.keys.get(key_id)
        except NotFound:
            info = None
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key_id] = (self._now() + self.ttl, info)
        return info

    def forget(self, key_id: UUID) -> None:
        with self._lock:
            self._cache.pop(key_id, None)


class Denied(ApiProblem):
    def __init__(self, status: int, reason: str, detail: str, counter: Counter) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="janus"'} if status == 401 else None
        code = "unauthorized" if status == 401 else "forbidden"
        super().__init__(status, code, detail, headers=headers)
        counter.add(1, {"reason": reason, "status": status})


def unauthorized(reason: str, counter: Counter) -> Denied:
    detail = (
        "send an API key as 'Authorization: Bearer <key>'"
        if reason == "missing"
        else "the API key is not valid"
    )
    return Denied(401, reason, detail, counter)


def forbidden(principal: Principal, needed: Role, counter: Counter, what: str = "this") -> Denied:
    return Denied(
        403,
        "forbidden",
        f"{what} needs the {needed.value} role; key {principal.name!r} has {principal.role.value}",
        counter,
    )
