"""The record of every import into this store: who, when, which file, which positions.

One aggregate per store (a fixed id), so that a single read answers "did this position come from
an import?". Imported history is a record of what happened elsewhere or earlier, never an order
to act here: the executor skips a grant at an imported position. Because the log keeps this
aggregate, a restore of a backup carries the ranges of the source's own imports along with it.
"""

from __future__ import annotations

import re
from typing import Any

from domain.base import MAX_NAME, JanusAggregate, derived_id, require_text
from domain.errors import InvalidValue
from domain.meta import CommandContext

IMPORT_LOG_ID = derived_id("imports")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ImportMode:
    RESTORE = "restore"  # into an empty store: positions kept exactly
    APPEND = "append"  # into a non-empty store: appended after its head, in file order


class ImportLog(JanusAggregate):
    @classmethod
    def open(cls, ctx: CommandContext) -> ImportLog:
        return cls._open(cls.Opened, ctx, id=IMPORT_LOG_ID)

    class Opened(JanusAggregate.Created):
        pass

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []

    def covers(self, position: int) -> bool:
        """Whether the event at ``position`` was written by an import."""
        return any(first <= position <= last for first, last in self.ranges)

    def record(
        self,
        *,
        file_name: str,
        sha256: str,
        mode: str,
        written: int,
        already_present: int,
        first_position: int,
        last_position: int,
        source_node: str,
        source_app: str,
        exported_at: str,
        signed: bool,
        ctx: CommandContext,
    ) -> None:
        if not SHA256.match(sha256):
            raise InvalidValue("sha256 must be 64 lowercase hex digits")
        if mode not in (ImportMode.RESTORE, ImportMode.APPEND):
            raise InvalidValue(f"unknown import mode {mode!r}")
        if written < 0 or already_present < 0:
            raise InvalidValue("counts must not be negative")
        if written and not 0 < first_position <= last_position:
            raise InvalidValue("the imported positions must form a range")
        self._record(
            self.Recorded,
            ctx,
            file_name=require_text("file_name", file_name, limit=4 * MAX_NAME),
            sha256=sha256,
            mode=mode,
            written=written,
            already_present=already_present,
            first_position=first_position if written else 0,
            last_position=last_position if written else 0,
            source_node=require_text("source_node", source_node, limit=MAX_NAME),
            source_app=require_text("source_app", source_app, limit=MAX_NAME),
            exported_at=require_text("exported_at", exported_at, limit=MAX_NAME),
            signed=signed,
        )

    class Recorded(JanusAggregate.Event):
        file_name: str
        sha256: str
        mode: str
        written: int
        already_present: int
        first_position: int
        last_position: int
        source_node: str
        source_app: str
        exported_at: str
        signed: bool

        def apply(self, aggregate: Any) -> None:
            if self.written:
                aggregate.ranges.append((self.first_position, self.last_position))
