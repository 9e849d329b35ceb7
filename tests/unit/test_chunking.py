"""Chunking is deterministic and chunk ids are stable: both make re-ingestion idempotent."""

from __future__ import annotations

import itertools
import uuid

import pytest

from adapters.chunking import ChunkSpec, chunk_id, chunk_text, collection_name
from adapters.embeddings import HashingEmbedder

TEXT = "Paragraph one is here.\n\nParagraph two goes on a while longer, with words.\n\n" * 20
DIGEST = "ab" * 32


def test_the_same_text_and_spec_give_the_same_chunks() -> None:
    assert chunk_text(TEXT, ChunkSpec(120, 30)) == chunk_text(TEXT, ChunkSpec(120, 30))


def test_chunks_respect_size_cover_the_text_in_order_and_cite_their_offset() -> None:
    chunks = chunk_text(TEXT, ChunkSpec(120, 30))

    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(TEXT[c.start : c.start + len(c.text)] == c.text for c in chunks)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    # Every word of the source lands in some chunk.
    assert set(TEXT.split()) == {w for c in chunks for w in c.text.split()}


def test_overlap_repeats_the_tail_of_the_previous_chunk() -> None:
    words = " ".join(f"w{i}" for i in range(400))

    chunks = chunk_text(words, ChunkSpec(100, 40))

    assert len(chunks) > 1
    for previous, current in itertools.pairwise(chunks):
        assert current.start < previous.start + len(previous.text)


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("", ChunkSpec()) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1), (10**6, 0)])
def test_bad_specs_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        ChunkSpec(size, overlap)


def test_spec_is_recorded_with_its_splitter() -> None:
    assert ChunkSpec(500, 50).as_dict() == {
        "splitter": "langchain-recursive-character",
        "size": 500,
        "overlap": 50,
    }


def test_chunk_ids_are_stable_across_releases() -> None:
    # Pinned: changing the formula would orphan every stored point instead of replacing it.
    assert chunk_id(uuid.UUID(int=1), 0, DIGEST) == uuid.UUID(
        "d9eb9fb3-ef64-5e6a-9ba7-212ba9ad2d65"
    )


def test_chunk_ids_differ_by_document_index_and_model() -> None:
    doc = uuid.uuid4()
    ids = {
        chunk_id(doc, 0, DIGEST),
        chunk_id(doc, 1, DIGEST),
        chunk_id(doc, 0, "cd" * 32),
        chunk_id(uuid.uuid4(), 0, DIGEST),
    }

    assert len(ids) == 4
    with pytest.raises(ValueError, match="index"):
        chunk_id(doc, -1, DIGEST)
    with pytest.raises(ValueError, match="digest"):
        chunk_id(doc, 0, "")


def test_collection_name_carries_the_model() -> None:
    small, large = HashingEmbedder(dim=8), HashingEmbedder(dim=16)

    assert collection_name("chunks", small) == f"chunks__hashing-v1-{small.digest[:12]}"
    assert collection_name("chunks", small) != collection_name("chunks", large)
