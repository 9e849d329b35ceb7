"""Domain errors: each names a broken invariant so callers can map it to a precise answer."""


class DomainError(Exception):
    """A command asked for something the domain forbids; nothing was recorded."""

    code = "invalid"


class InvalidValue(DomainError):
    code = "invalid"


class InvalidTransition(DomainError):
    """The aggregate is in a state where this fact cannot happen."""

    code = "conflict"


class AlreadyDecided(InvalidTransition):
    code = "already-decided"


class ConfirmationExpired(DomainError):
    code = "expired"


class Overfill(DomainError):
    code = "overfill"
