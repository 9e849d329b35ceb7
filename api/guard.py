"""Who may reach the API from a browser: loopback Host names only, same-origin writes only.

The API binds 127.0.0.1 with auth off by default, so a web page the operator visits must not be
able to drive it. Two attacks, two checks, both before any route runs:

* DNS rebinding: a page on ``evil.example`` re-points its name at 127.0.0.1; the browser then
  treats the API as same-origin but still sends ``Host: evil.example``. Only the configured Host
  names (loopback by default) are served; anything else is a 400.
* Cross-site requests: a form or ``fetch`` from another origin may POST without a preflight.
  A state-changing request whose ``Origin`` is not this server (or a configured origin), or whose
  ``Sec-Fetch-Site`` says another site sent it, is a 403. Clients that send neither header
  (curl, the CLI, SDKs) are not browsers and pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BROWSER_OK_SITES = frozenset({"same-origin", "none"})


def host_name(host_header: str) -> str:
    """The name part of a Host header, without the port; IPv6 literals keep no brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    for pattern in allowed:
        if pattern in ("*", name):
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class BrowserGuard:
    """Refuses unknown Host names (400) and cross-origin writes (403), as problem+json."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]
    ) -> None:
        self.app = app
        self.allowed_hosts = [h.strip().lower() for h in allowed_hosts if h.strip()]
        self.allowed_origins = {o.strip().lower().rstrip("/") for o in allowed_origins if o.strip()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, detail = refusal
        await problems.problem_response(request, status, code, detail)(scope, receive, send)

    def _refusal(self, request: Request) -> tuple[int, str, str] | None:
        host = request.headers.get("host", "")
        if not host_allowed(host_name(host), self.allowed_hosts):
            return (
                400,
                "host-not-allowed",
                f"Host {host_name(host)!r} is not served here; set JANUS_API_ALLOWED_HOSTS "
                "to serve it",
            )
        if request.method in SAFE_METHODS:
            return None
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host, request.url.scheme):
            return 403, "cross-origin", f"requests from origin {origin!r} may not change state"
        if site is not None and site.lower() not in BROWSER_OK_SITES and origin is None:
            return 403, "cross-origin", f"a {site} request may not change state"
        return None

    def _origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return origin != "null" and parts.scheme == scheme and parts.netloc == host.lower()
