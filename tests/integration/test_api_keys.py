"""API keys on both stores: only a hash is recorded, names are unique for good, revocation holds."""

from __future__ import annotations

import hashlib

import pytest

from bootstrap.container import Janus
from commands.invocation import Invocation
from commands.keys import CreateApiKey, KeyService, RevokeApiKey
from domain.api_key import ApiKeyStatus, KeyNameTaken, Role
from domain.errors import InvalidValue
from domain.meta import Actor, ActorKind

ROOT = Invocation(Actor(ActorKind.USER, "root", role="admin"))


@pytest.fixture
def keys(janus: Janus) -> KeyService:
    return KeyService(janus.commands.runner)


def test_a_created_key_is_recorded_only_as_its_hash(keys: KeyService, janus: Janus) -> None:
    issued = keys.create_key(CreateApiKey(name="ci-bot", role=Role.OPERATOR), ROOT)
    secret = issued.token.split("_", 2)[2]
    stored = b"".join(n.state for n in janus.reader.read_after(0, 1_000))
    assert secret.encode() not in stored and issued.token.encode() not in stored
    expected = "sha256:" + hashlib.sha256(issued.token.encode()).hexdigest()
    assert expected.encode() in stored
    assert issued.token not in repr(issued) and secret not in repr(issued.info)


def test_a_key_authenticates_until_it_is_revoked(keys: KeyService) -> None:
    token = keys.create_key(CreateApiKey(name="deployer", role=Role.ADMIN), ROOT).token
    found = keys.authenticate(token)
    assert found is not None and (found.name, found.role) == ("deployer", Role.ADMIN)
    assert keys.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.authenticate("jns_not_a_key") is None

    revoke = RevokeApiKey(key_id=found.id, reason="rotated")
    assert keys.revoke_key(revoke, ROOT).outcome == "revoked"
    assert keys.authenticate(token) is None
    assert keys.revoke_key(revoke, ROOT).outcome == "already_revoked"
    assert keys.find("deployer").status is ApiKeyStatus.REVOKED


def test_a_key_name_is_never_reused_even_after_revocation(keys: KeyService) -> None:
    first = keys.create_key(CreateApiKey(name="ops", role=Role.VIEWER), ROOT)
    with pytest.raises(KeyNameTaken):
        keys.create_key(CreateApiKey(name="ops", role=Role.ADMIN), ROOT)
    keys.revoke_key(RevokeApiKey(key_id=first.info.id), ROOT)
    with pytest.raises(KeyNameTaken):
        keys.create_key(CreateApiKey(name="ops", role=Role.ADMIN), ROOT)


def test_keys_are_listed_oldest_first_with_role_and_status(keys: KeyService) -> None:
    for name, role in (("a-viewer", Role.VIEWER), ("an-approver", Role.APPROVER)):
        keys.create_key(CreateApiKey(name=name, role=role), ROOT)
    keys.revoke_key(RevokeApiKey(key_id=keys.find("a-viewer").id), ROOT)
    listed = [(k.name, k.role, k.status) for k in keys.list_keys()]
    assert listed == [
        ("a-viewer", Role.VIEWER, ApiKeyStatus.REVOKED),
        ("an-approver", Role.APPROVER, ApiKeyStatus.ACTIVE),
    ]


def test_creating_a_key_cannot_be_replayed_under_an_idempotency_key(keys: KeyService) -> None:
    keyed = Invocation(ROOT.actor, idempotency_key="k-1")
    with pytest.raises(InvalidValue, match="idempotency"):
        keys.create_key(CreateApiKey(name="replayable", role=Role.VIEWER), keyed)


def test_each_role_includes_the_roles_before_it() -> None:
    order = [Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN]
    for i, role in enumerate(order):
        assert [role.allows(other) for other in order] == [j <= i for j in range(len(order))]
