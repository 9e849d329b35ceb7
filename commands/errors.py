"""Errors a caller can act on. Each maps to one HTTP status and one CLI message."""

from __future__ import annotations


class CommandError(Exception):
    code = "command-error"


class NotFound(CommandError):
    code = "not-found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"no {kind} with id {ident}")
        self.kind = kind
        self.ident = ident


class IdempotencyConflict(CommandError):
    code = "idempotency-conflict"


class IdConflict(CommandError):
    """A client-chosen id already names something else: another type, or a different request."""

    code = "id-conflict"


class ConcurrencyConflict(CommandError):
    code = "concurrency-conflict"


class StoreUnavailable(CommandError):
    code = "store-unavailable"
