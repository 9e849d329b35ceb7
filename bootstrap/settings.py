"""Typed settings, prefix JANUS_. With nothing set, Janus runs embedded under ./.janus/."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from event_store.messages import StreamSpec


def _url(variable: str, value: str, schemes: tuple[str, ...]) -> None:
    """Refuse here what would otherwise fail later as a traceback (a port out of range)."""
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{variable} must be a {schemes[0]}:// URL")
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ValueError(f"{variable} has a port that is not a number from 0 to 65535") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JANUS_", extra="ignore")

    home: Path = Field(default=Path(".janus"), description="Where embedded data lives.")
    database_url: str | None = Field(
        default=None, description="postgresql://user:pass@host:port/db; SQLite when unset."
    )
    nats_url: str | None = Field(
        default=None, description="nats://host:port; in-process when unset."
    )
    node_id: str = Field(default="local", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    app_name: str = Field(default="janus", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    lock_timeout_seconds: int = Field(default=5, ge=1, le=300)
    connect_timeout_seconds: int = Field(default=3, ge=1, le=120)
    pool_size: int = Field(default=8, ge=1, le=100)
    # The same bound as a request's own ttl (commands/models.py): a deadline stays a datetime.
    confirmation_ttl_seconds: int = Field(default=900, ge=1, le=30 * 24 * 3600)
    poll_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    stream_name: str = Field(default="janus-events", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    subject_prefix: str = Field(
        default="janus.events", pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"
    )
    stream_max_age_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=10 * 366 * 24 * 3600)
    # 1 GiB fits a default nats-server's file store beside other streams; the relay never
    # depends on old messages (rebuilds read the event store), so raise it only for consumers
    # that lag by days.
    stream_max_bytes: int = Field(default=1024**3, ge=1024**2, le=2**62)
    stream_duplicate_window_seconds: int = Field(default=2 * 3600, ge=1, le=30 * 24 * 3600)
    relay_max_in_flight: int = Field(default=512, ge=1, le=100_000)
    # Edge sync (issue 15): an edge publishes under <root>.edge.<node>.>; the hub stream sources
    # every edge named in JANUS_EDGE_NODES (comma-separated) and the ingester reads it.
    edge_subject_root: str = Field(default="janus", pattern=r"^[A-Za-z0-9_\-]+$")
    edge_hub_stream: str = Field(default="janus-edges", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    edge_ingest_batch_size: int = Field(default=2000, ge=1, le=10_000)
    edge_nodes: str = Field(
        default="", pattern=r"^([A-Za-z0-9_\-]{1,48}(,[A-Za-z0-9_\-]{1,48})*)?$"
    )
    export_hmac_key: SecretStr | None = Field(
        default=None,
        description="Signs `events export` files (HMAC-SHA256) and verifies them on import.",
    )
    leader_grace_seconds: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description="How long a new leader waits before touching what a term that vanished "
        "without stepping down may still be doing (longer than any one device call).",
    )
    model_path: Path | None = Field(
        default=None, description="The local GGUF model `janus replay decisions` runs by default."
    )
    # -- knowledge views (documents, chunks, graph): embedded under home/ unless a server is set --
    s3_url: str | None = Field(
        default=None, description="http(s)://host:port of an S3 server (MinIO); files when unset."
    )
    s3_access_key: str = Field(default="minioadmin", max_length=256)
    s3_secret_key: SecretStr = Field(default=SecretStr("minioadmin"))
    s3_bucket: str = Field(default="janus", pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    qdrant_url: str | None = Field(
        default=None, description="http(s)://host:port of a Qdrant server; local folder when unset."
    )
    qdrant_api_key: SecretStr | None = None
    graph_url: str | None = Field(
        default=None,
        description="neo4j:// or bolt:// (Neo4j) or falkor:// (FalkorDB); embedded when unset.",
    )
    graph_user: str = Field(default="neo4j", max_length=256)
    graph_password: SecretStr | None = None
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 (bundled, offline) or hashing (fast, not semantic: tests).",
        pattern=r"^(all-MiniLM-L6-v2|hashing)$",
    )
    chunk_size: int = Field(default=1000, ge=1, le=100_000)
    chunk_overlap: int = Field(default=150, ge=0, le=99_999)
    ingest_max_bytes: int = Field(default=50 * 1024**2, ge=1, le=2**40)
    runtime_views: str = Field(
        default="objects,vector,graph",
        pattern=r"^(none|((objects|vector|graph)(,(objects|vector|graph))*))$",
        description="The knowledge views `janus run`/`janus serve` keep current (comma list, or "
        "none when `janus project <view>` processes run them).",
    )

    extraction_enabled: bool = Field(
        default=True,
        description="Run entity extraction (recorded once per document) in the embedded process.",
    )
    extraction_model: str = Field(
        default="auto",
        description="auto (the agent's model), rules (deterministic twin), or a .gguf path.",
    )
    extraction_max_chunks: int = Field(default=256, ge=1, le=10_000)

    agent_enabled: bool = Field(
        default=True, description="Run the agent in `janus run` and the embedded process."
    )
    agent_model: str = Field(
        default="auto",
        description="auto (JANUS_MODEL_PATH, else the installed SmolLM2), rules, or a .gguf path.",
    )
    agent_max_steps: int = Field(default=8, ge=1, le=100)
    agent_token_budget: int = Field(default=20_000, ge=100)
    agent_model_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    agent_concurrency: int = Field(default=4, ge=1, le=64)
    agent_seed: int = Field(default=42, ge=0)
    agent_max_tokens: int = Field(default=96, ge=16, le=4096)
    # One thread: on a small shared machine llama.cpp's spinning worker threads lose more to
    # contention than they gain (measured: 6 s vs 41 s for a 300-token prompt under load).
    agent_threads: int = Field(default=1, ge=1, le=256)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        _url("JANUS_DATABASE_URL", value, ("postgresql", "postgres", "postgresql+psycopg"))
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # nats-py takes a comma-separated list of servers.
        for server in value.split(","):
            _url("JANUS_NATS_URL", server.strip(), ("nats", "tls", "ws", "wss"))
        return value

    @field_validator("s3_url", "qdrant_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _url(f"JANUS_{str(info.field_name).upper()}", value, ("http", "https"))
        return value

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, value: str | None) -> str | None:
        if value is not None:
            schemes = ("neo4j", "neo4j+s", "bolt", "bolt+s", "falkor", "falkors")
            _url("JANUS_GRAPH_URL", value, schemes)
        return value

    @model_validator(mode="after")
    def _overlap_within_chunk(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("JANUS_CHUNK_OVERLAP must be smaller than JANUS_CHUNK_SIZE")
        return self

    @model_validator(mode="after")
    def _window_within_age(self) -> Settings:
        if self.stream_duplicate_window_seconds > self.stream_max_age_seconds:
            raise ValueError(
                "JANUS_STREAM_DUPLICATE_WINDOW_SECONDS must not exceed "
                "JANUS_STREAM_MAX_AGE_SECONDS (JetStream refuses such a stream)"
            )
        return self

    def stream_spec(self) -> StreamSpec:
        return StreamSpec(
            name=self.stream_name,
            subject_prefix=self.subject_prefix,
            max_age_seconds=self.stream_max_age_seconds,
            max_bytes=self.stream_max_bytes,
            duplicate_window_seconds=self.stream_duplicate_window_seconds,
        )

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def sqlite_path(self) -> Path:
        return self.home / "events.sqlite"

    @property
    def views_url(self) -> str:
        """Views live beside the events: same Postgres database, or their own SQLite file."""
        if self.database_url is None:
            return f"sqlite:///{self.home / 'views.sqlite'}"
        parts = urlsplit(self.database_url)
        return parts._replace(scheme="postgresql+psycopg").geturl()

    def eventsourcing_env(self) -> dict[str, str]:
        if self.database_url is None:
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": str(self.lock_timeout_seconds),
            }
        parts = urlsplit(self.database_url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": str(self.connect_timeout_seconds),
            "POSTGRES_LOCK_TIMEOUT": str(self.lock_timeout_seconds),
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.pool_size),
            # Broken connections are already retried by the recorder; a ping per checkout
            # costs ~80 us of client CPU per command.
            "PROCESS_RECORDER_TOPIC": "event_store.postgres:JanusPostgresProcessRecorder",
        }

    def redacted_database_url(self) -> str:
        if self.database_url is None:
            return f"sqlite:{self.sqlite_path}"
        parts = urlsplit(self.database_url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.username:
            secret = ":***" if parts.password else ""
            netloc = f"{parts.username}{secret}@{netloc}"
        return parts._replace(netloc=netloc).geturl()
