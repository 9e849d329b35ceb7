"""One contract for every Embedder: the real all-MiniLM-L6-v2 (offline) and the hashing twin.

`EmbedderContract` is abstract (pytest skips classes not named Test*); each implementation
subclasses it once and provides a class-scoped `embedder` (the model loads once per class).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from adapters.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder

TEXTS = [
    "The cat sits on the mat.",
    "Shares fell sharply when the market opened.",
    "",
    "Ünïcödé and emoji 🚀 survive embedding.",
    "A much longer passage. " * 40,
]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class EmbedderContract:
    expected_dim: int

    def test_every_vector_has_the_dimension_and_unit_length(self, embedder: Embedder) -> None:
        vectors = embedder.embed_documents(TEXTS)

        assert embedder.dim == self.expected_dim
        assert [len(v) for v in vectors] == [self.expected_dim] * len(TEXTS)
        for vector in vectors:
            assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)
            assert all(math.isfinite(x) for x in vector)

    def test_the_same_text_gives_the_same_vector(self, embedder: Embedder) -> None:
        first = embedder.embed_documents(TEXTS)
        again = embedder.embed_documents(TEXTS)

        assert first == again

    def test_a_batch_equals_one_text_at_a_time(self, embedder: Embedder) -> None:
        batch = embedder.embed_documents(TEXTS)

        for text, vector in zip(TEXTS, batch, strict=True):
            assert embedder.embed_query(text) == pytest.approx(vector, abs=1e-5)

    def test_no_texts_no_vectors(self, embedder: Embedder) -> None:
        assert embedder.embed_documents([]) == []

    def test_digest_names_the_model_and_slug_is_safe(self, embedder: Embedder) -> None:
        assert re.fullmatch(r"[0-9a-f]{64}", embedder.digest)
        assert re.fullmatch(r"[a-z0-9-]+", embedder.slug)
        assert embedder.slug.endswith(embedder.digest[:12])

    def test_related_texts_score_higher_than_unrelated(self, embedder: Embedder) -> None:
        query = embedder.embed_query("the cat sits on a mat")
        related, unrelated = embedder.embed_documents(TEXTS[:2])

        assert cosine(query, related) > cosine(query, unrelated)


class TestHashingEmbedder(EmbedderContract):
    expected_dim = 64

    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls) -> Embedder:
        return HashingEmbedder(dim=64)

    def test_another_dimension_is_another_model(self) -> None:
        assert HashingEmbedder(dim=64).digest != HashingEmbedder(dim=32).digest
        assert HashingEmbedder(dim=64).digest == HashingEmbedder(dim=64).digest

    def test_bad_dimension_is_refused(self) -> None:
        with pytest.raises(ValueError, match="dim"):
            HashingEmbedder(dim=0)


class TestSentenceTransformerEmbedder(EmbedderContract):
    expected_dim = 384

    @pytest.fixture(scope="class")
    @classmethod
    def embedder(cls) -> Embedder:
        return SentenceTransformerEmbedder(batch_size=2)

    def test_meaning_not_just_words(self, embedder: Embedder) -> None:
        # No shared content word: only a semantic model ranks these right.
        query = embedder.embed_query("kitten resting on a rug")
        pet, finance = embedder.embed_documents(TEXTS[:2])

        assert cosine(query, pet) > cosine(query, finance) + 0.2

    def test_a_missing_model_folder_fails_clearly(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="model folder"):
            SentenceTransformerEmbedder(model_path=tmp_path / "nothing")
