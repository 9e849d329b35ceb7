"""API keys: who may drive Janus over HTTP, and with which role.

Only a hash of the key is ever recorded; the key itself is shown once to whoever created it.
A key's id is derived from its name, so two keys can never share a name and a name in the audit
trail always means the same key, even after it was revoked.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, derived_id, require_text
from domain.errors import InvalidTransition, InvalidValue
from domain.meta import CommandContext

KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


class Role(StrEnum):
    """Each role may do everything the roles before it may do."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class KeyNameTaken(InvalidTransition):
    code = "key-name-taken"


def api_key_id(name: str) -> UUID:
    return derived_id("api-key", name)


class ApiKey(JanusAggregate):
    @classmethod
    def create(
        cls, key_id: UUID, name: str, role: Role, key_hash: str, ctx: CommandContext
    ) -> ApiKey:
        if not KEY_NAME.fullmatch(name):
            raise InvalidValue(
                "a key name is 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if not KEY_HASH.fullmatch(key_hash):
            raise InvalidValue("key_hash must be 'sha256:' and 64 hex digits, never the key itself")
        return cls._open(cls.Created, ctx, id=key_id, name=name, role=role.value, key_hash=key_hash)

    class Created(JanusAggregate.Created):
        name: str
        role: str
        key_hash: str

    def __init__(self, name: str, role: str, key_hash: str) -> None:
        self.name = name
        self.role = Role(role)
        self.key_hash = key_hash
        self.status = ApiKeyStatus.ACTIVE
        self.revoked_reason: str | None = None
        self.revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status is ApiKeyStatus.ACTIVE

    def revoke(self, reason: str, ctx: CommandContext) -> bool:
        """Revoke once; a repeated revoke records nothing. Returns whether a fact was recorded."""
        if self.status is ApiKeyStatus.REVOKED:
            return False
        self._record(self.Revoked, ctx, reason=require_text("reason", reason, limit=2_000))
        return True

    class Revoked(JanusAggregate.Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ApiKeyStatus.REVOKED
            aggregate.revoked_reason = self.reason
            aggregate.revoked_at = self.timestamp
