"""Settings of the HTTP API (prefix ``JANUS_API_``): where it listens, who may call it, limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = frozenset({"127.0.0.1", "::1"})


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JANUS_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port.")
    auth: Literal["auto", "keys", "off"] = Field(
        default="auto",
        description="keys: API keys required. off: only for the embedded store on 127.0.0.1. "
        "auto: off in exactly that case, keys otherwise.",
    )
    runtime: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Run views, executor, expiry and scheduler in this process. auto: on "
        "unless NATS is configured (the full stack runs them as separate processes).",
    )
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024**2)
    read_wait_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Longest wait for ?min_position."
    )
    key_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long a checked key is trusted before it is read again; a key revoked "
        "elsewhere stops working within this time (at once when revoked through this API).",
    )
    ready_max_lag: int = Field(default=1_000, ge=0, description="Readiness: largest view lag.")
    sse_poll_seconds: float = Field(default=0.2, gt=0, le=10)
    sse_max_streams: int = Field(default=64, ge=1, le=10_000)
    sse_max_streams_per_key: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="Open event streams one API key may hold, so one viewer cannot take all.",
    )
    allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1",
        description="Comma-separated Host names served (a DNS-rebinding guard); '*.example.com' "
        "matches subdomains, '*' any host.",
    )
    allowed_origins: str = Field(
        default="",
        description="Comma-separated origins (scheme://host:port) besides the API's own that "
        "may send POST/DELETE from a browser.",
    )
    trace_exporter: Literal["none", "console", "otlp"] = "none"
    access_log: bool = Field(
        default=False,
        description="uvicorn's log line per request. Off by default: formatting and writing it "
        "costs the event loop more per request than the request's span and metrics do.",
    )
    idempotency_retention_hours: int = Field(default=24, ge=1, le=24 * 90)

    def host_names(self) -> list[str]:
        """The allowed Host names, plus the one address the operator chose to bind (not a
        wildcard): clients reach it by that name, and an IP literal cannot be rebound by DNS."""
        names = [h for h in self.allowed_hosts.split(",") if h.strip()]
        if self.host not in ("0.0.0.0", "::", ""):
            names.append(self.host)
        return names

    def origins(self) -> list[str]:
        return [o for o in self.allowed_origins.split(",") if o.strip()]


class UnsafeBinding(ValueError):
    """The settings would expose an API without authentication."""


def auth_required(api: ApiSettings, embedded: bool) -> bool:
    """Keys are required everywhere except the embedded default bound to the loopback address.

    ``embedded``: the node keeps its events in the embedded (SQLite) store."""
    may_skip = embedded and api.host in LOOPBACK
    if api.auth == "off" and not may_skip:
        where = "the embedded store" if embedded else "a Postgres store"
        raise UnsafeBinding(
            f"JANUS_API_AUTH=off is refused on {api.host} with {where}: authentication may be "
            "off only for the embedded store bound to 127.0.0.1"
        )
    if api.auth == "keys":
        return True
    return not may_skip


def runtime_in_process(api: ApiSettings, nats_configured: bool) -> bool:
    """``nats_configured``: the full stack, whose views and runtime run as their own processes."""
    if api.runtime == "auto":
        return not nats_configured
    return api.runtime == "on"
