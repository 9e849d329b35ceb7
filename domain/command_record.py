"""The first answer given to an idempotency key, saved atomically with the command's events."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.base import JanusAggregate, derived_id
from domain.meta import CommandContext


def command_record_id(idempotency_key: str) -> UUID:
    return derived_id("command", idempotency_key)


class CommandRecord(JanusAggregate):
    @classmethod
    def accept(
        cls,
        idempotency_key: str,
        command_type: str,
        payload_digest: str,
        result: dict[str, Any],
        ctx: CommandContext,
    ) -> CommandRecord:
        return cls._open(
            cls.Accepted,
            ctx,
            id=command_record_id(idempotency_key),
            idempotency_key=idempotency_key,
            command_type=command_type,
            payload_digest=payload_digest,
            result=result,
        )

    class Accepted(JanusAggregate.Created):
        idempotency_key: str
        command_type: str
        payload_digest: str
        result: dict[str, Any]

    def __init__(
        self, idempotency_key: str, command_type: str, payload_digest: str, result: dict[str, Any]
    ) -> None:
        self.idempotency_key = idempotency_key
        self.command_type = command_type
        self.payload_digest = payload_digest
        self.result = result
