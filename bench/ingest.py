"""Ingestion into the vector view against raw sentence-transformers encoding, and search latency.

    .venv/bin/python -m bench.ingest [--chunks 2000] [--search-chunks 10000] [--json]

Everything on the embedded default (SQLite log and views, files for blobs, Qdrant local folder,
all-MiniLM-L6-v2 on CPU), in one run:

- ingestion: a generated corpus of text files (about ten chunks each) goes files -> blob store ->
  ``RegisterDocument`` events -> the vector projection (chunking, embedding, upserts, position)
  until its last document is found by a search filtered to it. Beside it, the raw baseline:
  ``SentenceTransformer.encode`` of exactly the same chunk texts at the same batch size (the
  model loaded beforehand for both). The ratio raw time / pipeline time is judged (>= 0.8).
- rebuild: ``KnowledgeRunner.rebuild`` of the same view (a new collection, alias switch, old one
  dropped) against the same raw encode.
- search: a second corpus of at least 10k short chunks, then ``VectorSearch.search`` (query
  embedding + Qdrant query, k=10) for random queries: p50/p95, beside the Qdrant query alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from adapters.chunking import chunk_text
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind
from projections.search import SearchFilters

TARGET = 0.8
CHUNKS_PER_DOCUMENT = 10
WORDS = [
    "pump",
    "valve",
    "pressure",
    "station",
    "north",
    "south",
    "sensor",
    "maintenance",
    "schedule",
    "operator",
    "alarm",
    "door",
    "lock",
    "shift",
    "report",
    "inspection",
    "turbine",
    "cooling",
    "water",
    "supply",
    "storage",
    "delivery",
    "invoice",
    "order",
    "customer",
    "contract",
    "audit",
    "safety",
    "incident",
    "training",
    "policy",
    "access",
    "badge",
    "camera",
    "network",
    "server",
    "backup",
    "storage",
    "power",
    "outage",
    "generator",
    "battery",
    "solar",
    "panel",
    "roof",
    "window",
    "heating",
    "ventilation",
]
OPERATOR = Invocation(Actor(ActorKind.USER, "bench", role="operator"))
console = Console(stderr=True)


@dataclass
class Result:
    chunks: int
    documents: int
    pipeline_seconds: float
    raw_encode_seconds: float
    ratio: float
    pipeline_cpu_seconds: float
    raw_encode_cpu_seconds: float
    cpu_ratio: float
    rebuild_seconds: float
    rebuild_ratio: float
    search_chunks: int
    search_ingest_seconds: float
    search_p50_ms: float
    search_p95_ms: float
    qdrant_p50_ms: float
    qdrant_p95_ms: float


def paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_corpus(folder: Path, documents: int, chunk_size: int, seed: int) -> list[Path]:
    """Documents of about CHUNKS_PER_DOCUMENT chunks of ``chunk_size`` characters."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    paths = []
    for d in range(documents):
        paragraphs, length = [], 0
        while length < chunk_size * CHUNKS_PER_DOCUMENT * 0.9:
            text = paragraph(rng, rng.randint(chunk_size // 14, chunk_size // 8))
            paragraphs.append(text)
            length += len(text) + 2
        path = folder / f"doc-{d:05}.txt"
        path.write_text("\n\n".join(paragraphs))
        paths.append(path)
    return paths


@contextmanager
def embedded(home: Path, chunk_size: int) -> Iterator[Janus]:
    settings = Settings(
        home=home,
        database_url=None,
        chunk_size=chunk_size,
        chunk_overlap=chunk_size // 10,
        agent_enabled=False,
    )
    janus = Janus.build(settings)
    try:
        yield janus
    finally:
        janus.close()


def ingest(janus: Janus, paths: list[Path]) -> None:
    blobs = janus.knowledge.blobs
    for path in paths:
        stored = blobs.put(path.read_bytes(), "text/plain")
        janus.commands.register_document(
            m.RegisterDocument(
                source_uri=path.as_uri(),
                content_type="text/plain",
                sha256=stored.sha256,
                size_bytes=stored.size,
            ),
            OPERATOR,
        )


def all_chunks(janus: Janus, paths: list[Path]) -> list[str]:
    spec = janus.knowledge.chunking
    return [c.text for path in paths for c in chunk_text(path.read_text(), spec)]


def timed_pipeline(janus: Janus, paths: list[Path]) -> tuple[float, float]:
    """Files in until the last one's chunks are found by search: (wall, CPU) seconds."""
    vector = janus.knowledge_views["vector"]
    vector.setup()
    cpu = time.process_time()
    start = time.perf_counter()
    ingest(janus, paths)
    vector.catch_up(timeout=3600)
    last = all_chunks(janus, paths[-1:])[0]
    newest = janus.reader.decode(janus.reader.read_after(janus.reader.head() - 1, 1)[0])
    hits = janus.knowledge.search().search(
        last, k=1, filters=SearchFilters(document_id=newest.originator_id)
    )
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    assert hits and hits[0].text == last, "the last document is not searchable"
    return elapsed


def timed_encode(janus: Janus, texts: list[str]) -> tuple[float, float]:
    embedder = janus.knowledge.embedder
    cpu = time.process_time()
    start = time.perf_counter()
    embedder.embed_documents(texts)  # one call: the raw encode at the embedder's batch size
    return time.perf_counter() - start, time.process_time() - cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_latency(janus: Janus, queries: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    search = janus.knowledge.search()
    index, embedder = janus.knowledge.index, janus.knowledge.embedder
    live = index.alias_target("chunks") or ""
    full, raw = [], []
    for _ in range(queries):
        query = " ".join(rng.choice(WORDS) for _ in range(5))
        start = time.perf_counter()
        search.search(query, k=10)
        full.append((time.perf_counter() - start) * 1000)
        vector = embedder.embed_query(query)
        start = time.perf_counter()
        index.search(live, vector, 10)
        raw.append((time.perf_counter() - start) * 1000)
    return full, raw


def run(chunks: int, search_chunks: int, queries: int, seed: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="janus-bench-ingest-") as tmp:
        root = Path(tmp)
        documents = max(1, chunks // CHUNKS_PER_DOCUMENT)
        paths = write_corpus(root / "corpus", documents, 400, seed)
        with embedded(root / "janus", 400) as janus:
            janus.knowledge.embedder.embed_documents(["load the model before timing"])
            texts = all_chunks(janus, paths)
            console.print(f"ingestion: {len(paths)} files, {len(texts)} chunks")
            before = timed_encode(janus, texts)
            pipeline, pipeline_cpu = timed_pipeline(janus, paths)
            # The better of two raw runs, one on each side: the ratio is not flattered by noise.
            raw, raw_cpu = min(before, timed_encode(janus, texts))
            start = time.perf_counter()
            janus.knowledge_views["vector"].rebuild()
            rebuild = time.perf_counter() - start
        search_docs = max(1, search_chunks // CHUNKS_PER_DOCUMENT + 1)
        search_paths = write_corpus(root / "search-corpus", search_docs, 120, seed + 1)
        with embedded(root / "search", 120) as janus:
            janus.knowledge.embedder.embed_documents(["load the model before timing"])
            total = len(all_chunks(janus, search_paths))
            console.print(f"search: {len(search_paths)} files, {total} chunks")
            search_ingest, _ = timed_pipeline(janus, search_paths)
            full, qdrant = search_latency(janus, queries, seed)
    return Result(
        chunks=len(texts),
        documents=len(paths),
        pipeline_seconds=round(pipeline, 2),
        raw_encode_seconds=round(raw, 2),
        ratio=round(raw / pipeline, 3),
        pipeline_cpu_seconds=round(pipeline_cpu, 2),
        raw_encode_cpu_seconds=round(raw_cpu, 2),
        cpu_ratio=round(raw_cpu / pipeline_cpu, 3),
        rebuild_seconds=round(rebuild, 2),
        rebuild_ratio=round(raw / rebuild, 3),
        search_chunks=total,
        search_ingest_seconds=round(search_ingest, 2),
        search_p50_ms=round(statistics.median(full), 2),
        search_p95_ms=round(percentile(full, 0.95), 2),
        qdrant_p50_ms=round(statistics.median(qdrant), 2),
        qdrant_p95_ms=round(percentile(qdrant, 0.95), 2),
    )


def report(result: Result) -> str:
    verdict = "✓" if result.ratio >= TARGET else "✗"
    return "\n".join(
        [
            f"ingestion, {result.chunks} chunks ({result.documents} files): pipeline "
            f"{result.pipeline_seconds}s vs raw encode {result.raw_encode_seconds}s: "
            f"ratio {result.ratio} (target >= {TARGET}) {verdict}; CPU seconds "
            f"{result.pipeline_cpu_seconds} vs {result.raw_encode_cpu_seconds}: ratio "
            f"{result.cpu_ratio}",
            f"vector rebuild: {result.rebuild_seconds}s vs raw encode "
            f"{result.raw_encode_seconds}s: ratio {result.rebuild_ratio}",
            f"search at {result.search_chunks} chunks: p50 {result.search_p50_ms} ms, p95 "
            f"{result.search_p95_ms} ms (Qdrant query alone: p50 {result.qdrant_p50_ms} ms, "
            f"p95 {result.qdrant_p95_ms} ms); those chunks took {result.search_ingest_seconds}s "
            "to ingest",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=2_000)
    parser.add_argument("--search-chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.chunks, args.search_chunks, args.queries, args.seed)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(report(result))
    return asdict(result)


if __name__ == "__main__":
    main()
