"""`janus ingest` and `janus documents` on the embedded store: exit codes, output, JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from adapters.extraction import DocumentExtractor
from bootstrap.container import Janus
from bootstrap.documents import build_blob_store
from bootstrap.settings import Settings
from projections.objects import ObjectProjection
from tests.support.cli import as_json, assert_clean_failure, cli, ok
from tests.support.documents import write_notes

ROOT = Path(__file__).resolve().parents[2]


def ingest_json(*args: str) -> dict[str, list[dict[str, str]]]:
    """`janus ingest --json`, whether or not something was refused (exit 1)."""
    result = cli("ingest", *args, "--json")
    assert result.exit_code in (0, 1), result.output
    summary: dict[str, list[dict[str, str]]] = json.loads(result.stdout)
    return summary


def run_object_view(home: Path) -> None:
    """What the object projector does: extract and chunk every registered document."""
    janus = Janus.build(Settings(home=home))
    try:
        view = ObjectProjection(build_blob_store(janus.settings), DocumentExtractor())
        view.start()
        view.apply([janus.reader.decode(n) for n in janus.reader.read_after(0, 1_000)])
    finally:
        janus.close()


def test_a_folder_is_ingested_recursively_and_again_records_nothing_new(
    home: Path, tmp_path: Path
) -> None:
    files = write_notes(tmp_path / "notes")
    (tmp_path / "notes" / ".draft.md").write_text("hidden: left out")

    first = ok("ingest", str(tmp_path / "notes"))
    again = as_json("ingest", str(tmp_path / "notes"))

    assert "4 new, 0 already ingested, 0 refused" in first.stdout
    assert (len(again["new"]), len(again["already_ingested"]), again["refused"]) == (0, 4, [])
    listed = as_json("documents", "list")
    assert sorted(d["title"] for d in listed) == sorted(p.name for p in files.values())
    assert {d["media_type"] for d in listed} == {
        "text/plain",
        "text/markdown",
        "text/html",
        "application/pdf",
    }


def test_refused_files_are_listed_with_reasons_and_exit_1_while_the_rest_go_in(
    home: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.md"
    good.write_text("# fine\n")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")

    result = cli("ingest", str(good), str(photo), str(empty), str(tmp_path / "missing.pdf"))

    assert result.exit_code == 1, result.output
    assert "1 new, 0 already ingested, 3 refused" in result.stdout
    for fragment in ("photo.jpg", "unsupported-media-type", "empty", "missing.pdf", "no such"):
        assert fragment in result.stdout
    assert [d["title"] for d in as_json("documents", "list")] == ["good.md"]


def test_show_has_the_record_and_each_views_status(home: Path, tmp_path: Path) -> None:
    files = write_notes(tmp_path / "notes")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 this is not really a PDF")
    added = ingest_json(str(files["pdf"]), str(broken))["new"]
    pdf_id, broken_id = (d["document_id"] for d in added)

    before = as_json("documents", "show", pdf_id[:8])
    run_object_view(home)
    after = as_json("documents", "show", pdf_id)
    failed = as_json("documents", "show", broken_id)

    assert before["views"] == {}
    assert (after["title"], after["status"]) == ("manual.pdf", "registered")
    assert after["views"]["objects"]["status"] == "extracted"
    assert len(after["views"]["objects"]["chunks"]) >= 1
    assert failed["views"]["objects"]["status"] == "failed"
    assert "PDF" in failed["views"]["objects"]["reason"]
    assert "objects view: extracted" in ok("documents", "show", pdf_id).stdout


def test_retract_withdraws_a_document_once(home: Path, tmp_path: Path) -> None:
    files = write_notes(tmp_path / "notes")
    [added] = ingest_json(str(files["text"]))["new"]

    first = ok("documents", "retract", added["document_id"], "--reason", "superseded")
    again = ok("documents", "retract", added["document_id"], "--reason", "superseded")

    assert first.stdout.strip().endswith(": retracted")
    assert again.stdout.strip().endswith(": already_retracted")
    [row] = as_json("documents", "list", "--status", "retracted")
    assert (row["retraction_reason"], row["retracted_at"] is not None) == ("superseded", True)


def test_unknown_or_malformed_ids_are_one_line_errors(home: Path) -> None:
    assert_clean_failure(cli("documents", "show", "0123abcd"), "not-found")
    assert_clean_failure(cli("documents", "retract", "xyz", "--reason", "r"), "neither a UUID")
    assert_clean_failure(
        cli("documents", "retract", "00000000-0000-0000-0000-000000000000", "--reason", "r"),
        "not-found",
    )


def test_a_sigkill_between_the_put_and_the_event_leaves_a_blob_and_the_retry_records_once(
    settings: Settings, tmp_path: Path
) -> None:
    """The story of the write path's one dangerous point, as real processes on both stores."""
    files = write_notes(tmp_path / "notes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env |= {"PYTHONPATH": str(ROOT), "JANUS_HOME": str(settings.home)}
    if settings.database_url:
        env["JANUS_DATABASE_URL"] = settings.database_url
    argv = [sys.executable, "-m", "cli.main", "ingest", str(files["pdf"]), "--json"]

    crashed = subprocess.run(
        argv,
        check=False,
        env={**env, "JANUS_CRASH_AT": "ingest.after_put"},
        capture_output=True,
        timeout=120,
    )
    janus = Janus.build(settings)
    try:
        blobs = build_blob_store(janus.settings)
        assert crashed.returncode == -signal.SIGKILL
        assert len(list(blobs.list_keys())) == 1  # the bytes, unreferenced
        assert janus.app.head() == 0  # no event

        retried = subprocess.run(
            argv, check=False, env=env, capture_output=True, timeout=120, text=True
        )
        again = subprocess.run(
            argv, check=False, env=env, capture_output=True, timeout=120, text=True
        )

        assert retried.returncode == 0, retried.stderr
        assert len(json.loads(retried.stdout)["new"]) == 1
        assert len(json.loads(again.stdout)["already_ingested"]) == 1
        assert len(list(blobs.list_keys())) == 1
        janus.relational.catch_up()
        assert [row["title"] for row in janus.views.documents()] == ["manual.pdf"]
    finally:
        janus.close()
