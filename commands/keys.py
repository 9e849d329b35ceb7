"""API keys: create and revoke them, find them, and check a presented key against its hash.

A key looks like ``jns_<key id, 32 hex>_<secret, 43 url-safe characters>``. The key id tells the
server which key is claimed, so checking one costs one read by id, never a scan; only
``sha256:<hex>`` of the whole key is recorded. 256 random bits make a slow password hash pointless:
nobody can guess such a key from its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import Field

from commands.errors import NotFound
from commands.invocation import CommandResult, Invocation
from commands.models import Command, Reason
from commands.runner import CommandRunner, ContextFactory, Decided
from domain.api_key import ApiKey, ApiKeyStatus, KeyNameTaken, Role, api_key_id
from domain.errors import InvalidValue

TOKEN = re.compile(r"jns_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
CREATED_TOPIC = get_topic(ApiKey.Created)
_PAGE = 1_000


class CreateApiKey(Command):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    role: Role


class RevokeApiKey(Command):
    key_id: UUID
    reason: Reason = "revoked"


def new_token(key_id: UUID) -> str:
    return f"jns_{key_id.hex}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def claimed_key_id(token: str) -> UUID | None:
    """The key id a presented token claims, or None when it is not shaped like a Janus key."""
    match = TOKEN.fullmatch(token)
    return UUID(hex=match.group(1)) if match else None


@dataclass(frozen=True)
class KeyInfo:
    id: UUID
    name: str
    role: Role
    status: ApiKeyStatus
    created_at: datetime
    revoked_at: datetime | None
    key_hash: str = field(repr=False)

    @property
    def active(self) -> bool:
        return self.status is ApiKeyStatus.ACTIVE

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(hash_token(token), self.key_hash)


@dataclass(frozen=True)
class IssuedKey:
    """The one moment the key exists in clear: hand it over, then forget it."""

    result: CommandResult
    info: KeyInfo
    token: str = field(repr=False)


class KeyService:
    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner

    def create_key(self, cmd: CreateApiKey, inv: Invocation) -> IssuedKey:
        if inv.idempotency_key is not None:
            # A replay could not hand back the key: only its hash was recorded.
            raise InvalidValue("creating a key cannot take an idempotency key")
        key_id = api_key_id(cmd.name)
        token = new_token(key_id)

        def decide(ctx: ContextFactory) -> Decided:
            if self.runner.exists(key_id):
                raise KeyNameTaken(
                    f"a key named {cmd.name!r} already exists (names are never reused)"
                )
            key = ApiKey.create(key_id, cmd.name, cmd.role, hash_token(token), ctx(str(key_id)))
            return Decided(key_id, "created", (key,))

        result = self.runner.run(cmd, inv, decide)
        return IssuedKey(result, self.get(key_id), token)

    def revoke_key(self, cmd: RevokeApiKey, inv: Invocation) -> CommandResult:
        def decide(ctx: ContextFactory) -> Decided:
            key: ApiKey = self.runner.load(ApiKey, cmd.key_id)
            revoked = key.revoke(cmd.reason, ctx(str(key.id)))
            return Decided(key.id, "revoked" if revoked else "already_revoked", (key,))

        return self.runner.run(cmd, inv, decide)

    def get(self, key_id: UUID) -> KeyInfo:
        key: ApiKey = self.runner.load(ApiKey, key_id)
        return _info(key)

    def find(self, name_or_id: str) -> KeyInfo:
        """A key by its id or its name."""
        try:
            key_id = UUID(name_or_id)
        except ValueError:
            key_id = api_key_id(name_or_id)
        try:
            return self.get(key_id)
        except NotFound:
            raise NotFound("api key", name_or_id) from None

    def authenticate(self, token: str) -> KeyInfo | None:
        """The active key this token is, or None. Costs one read by id."""
        key_id = claimed_key_id(token)
        if key_id is None:
            return None
        try:
            info = self.get(key_id)
        except NotFound:
            return None
        return info if info.active and info.matches(token) else None

    def list_keys(self) -> list[KeyInfo]:
        """Every key ever created, oldest first (reads only the log's key-creation events)."""
        ids: list[UUID] = []
        position = 0
        recorder = self.runner.app.recorder
        while True:
            page = recorder.select_notifications(
                start=position, limit=_PAGE, topics=[CREATED_TOPIC], inclusive_of_start=False
            )
            if not page:
                break
            ids.extend(UUID(str(n.originator_id)) for n in page)
            position = page[-1].id
        return [self.get(key_id) for key_id in ids]


def _info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        name=key.name,
        role=key.role,
        status=key.status,
        created_at=key.created_on,
        revoked_at=key.revoked_at,
        key_hash=key.key_hash,
    )
