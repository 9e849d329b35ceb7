"""Verify a SQL projection: build it afresh beside the live view and compare the two.

``verify(projections, name)`` builds a scratch generation the way a rebuild does
(projections/generation_build.py), brings it to the live view's position under the live
position lock, compares the two row by row, and drops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from projections.build_status import sql_runner_for
from projections.generation_build import (
    BUILD_BATCH,
    GenerationBuild,
    ProgressCallback,
    exclusive,
)
from projections.positions import locked_row
from projections.registry import Projections
from projections.runner import ProjectionRunner
from projections.sql_apply import BatchFailed, EventFailed

SAMPLES_PER_TABLE = 5


@dataclass(frozen=True)
class TableDiff:
    table: str
    live_rows: int
    rebuilt_rows: int
    missing: int
    extra: int
    changed: int
    samples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def summary(self) -> str:
        parts = [
            f"{count} {kind}"
            for kind, count in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("changed", self.changed),
            )
            if count
        ]
        return f"{self.table}: {', '.join(parts) or 'same'}"


@dataclass(frozen=True)
class VerifyReport:
    """``missing``: rows a fresh build has and the live view lacks; ``extra``: the reverse."""

    name: str
    position: int
    tables: tuple[TableDiff, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def differences(self) -> list[TableDiff]:
        return [t for t in self.tables if not t.ok]

    def summary(self) -> str:
        if self.ok:
            return f"{self.name} matches a fresh build at position {self.position}"
        parts = "; ".join(t.summary() for t in self.differences())
        return f"{self.name} differs from a fresh build at position {self.position}: {parts}"


def verify(
    projections: Projections,
    name: str,
    progress: ProgressCallback | None = None,
    batch_size: int = BUILD_BATCH,
) -> VerifyReport:
    """Build ``name`` afresh into a scratch generation and compare it with the live view.

    The comparison runs under the live projection's position lock, so the live runner pauses
    while the tables are read; the scratch generation is dropped whatever happens.
    """
    runner = sql_runner_for(projections, name)
    with exclusive(projections, runner) as live_generation:
        build = GenerationBuild(runner, live_generation + 1, "verify", batch_size)
        try:
            build.create()
            build.run(progress, target=lambda: runner.position)
            return _compare_at_live_position(runner, build, progress)
        finally:
            build.drop()


def _compare_at_live_position(
    runner: ProjectionRunner, build: GenerationBuild, progress: ProgressCallback | None
) -> VerifyReport:
    while True:
        start = build.position
        try:
            with runner.engine.begin() as conn:
                live = locked_row(conn, runner.name)
                build.apply_tail(conn, live.position)
                diffs = tuple(
                    compare_tables(conn, mine, theirs)
                    for mine, theirs in zip(build.live_tables, build.projection.tables, strict=True)
                )
                return VerifyReport(runner.name, live.position, diffs)
        except (EventFailed, BatchFailed):
            build.position = start
            build.run(progress, target=lambda: runner.position)


def compare_tables(
    conn: Connection, live: Table, rebuilt: Table, samples: int = SAMPLES_PER_TABLE
) -> TableDiff:
    """Merge both tables in key order, streaming, and count the rows that differ."""
    columns = [c.name for c in rebuilt.columns]
    key = _key_name(rebuilt)
    counts = {"live": 0, "rebuilt": 0, "missing": 0, "extra": 0, "changed": 0}
    notes: list[str] = []

    def note(kind: str, text: str) -> None:
        counts[kind] += 1
        if len(notes) < samples:
            notes.append(text)

    mine = _ordered_rows(conn, live, key, columns)
    theirs = _ordered_rows(conn, rebuilt, key, columns)
    left, right = next(mine, None), next(theirs, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[key] < right[key]):
            assert left is not None
            note("extra", f"extra row {left[key]}")
            counts["live"] += 1
            left = next(mine, None)
        elif left is None or right[key] < left[key]:
            note("missing", f"missing row {right[key]}")
            counts["rebuilt"] += 1
            right = next(theirs, None)
        else:
            changed = [c for c in columns if left[c] != right[c]]
            if changed:
                c = changed[0]
                note("changed", f"row {left[key]}: {c} is {left[c]!r}, rebuilt {right[c]!r}")
            counts["live"] += 1
            counts["rebuilt"] += 1
            left, right = next(mine, None), next(theirs, None)
    return TableDiff(
        table=live.name,
        live_rows=counts["live"],
        rebuilt_rows=counts["rebuilt"],
        missing=counts["missing"],
        extra=counts["extra"],
        changed=counts["changed"],
        samples=tuple(notes),
    )


def _key_name(table: Table) -> str:
    return next(iter(table.primary_key.columns)).name


def _ordered_rows(
    conn: Connection, table: Table, key: str, columns: list[str]
) -> Iterator[dict[str, Any]]:
    column = table.c[key]
    # Python compares strings by code point; so must the database, whatever its locale.
    by_code_point = conn.dialect.name == "postgresql" and _is_text(column)
    order = column.collate("C") if by_code_point else column
    query = select(*(table.c[c] for c in columns)).order_by(order).execution_options(yield_per=1000)
    for row in conn.execute(query).mappings():
        yield dict(row)


def _is_text(column: Any) -> bool:
    return column.type.python_type is str
