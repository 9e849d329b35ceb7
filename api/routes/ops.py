"""Operations: liveness, readiness with details, and the views' status and lag."""

from __future__ import annotations

from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from adapters.role_status import read_roles
from api import schemas as s
from api.context import ApiContext
from api.deps import Api, Viewer
from api.problems import error_id, responses
from domain.api_key import Role
from event_store.faults import cause_of
from projections.knowledge import NOT_STARTED

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=s.Liveness)
async def healthz() -> s.Liveness:
    """The process is alive (nothing else is checked)."""
    return s.Liveness()


@router.get(
    "/readyz",
    response_model=s.Readiness,
    responses={503: {"model": s.Readiness, "description": "Not ready; the checks say why."}},
)
async def readyz(api: Api) -> JSONResponse:
    """Ready to serve: the store answers, the views are within their lag bound (a knowledge view
    once it has started), the in-process runtime has started and the relay keeps up, where those
    run."""
    checks = await api.run(readiness, api)
    body = s.Readiness(ready=all(c.ok for c in checks), checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


def readiness(api: ApiContext) -> list[s.Check]:
    parts = api.parts
    try:
        head = parts.reader.head()
    except (OperationalError, InterfaceError, SQLAlchemyError) as error:
        cause = cause_of(error) or type(error).__name__
        return [s.Check(name="store", ok=False, detail=f"unavailable: {cause}")]
    checks = [s.Check(name="store", ok=True, detail=f"head {head}")]
    bound = api.settings.ready_max_lag
    for runner in parts.projections:
        try:
            status = runner.status()
        except SQLAlchemyError as error:
            checks.append(
                s.Check(name=runner.name, ok=False, detail=f"unreadable: {type(error).__name__}")
            )
            continue
        if status.state == NOT_STARTED:
            continue  # a knowledge view this node does not run (nor has run): not its readiness
        ok = status.state == "running" and status.lag <= bound
        detail = f"{status.state}, position {status.position}, lag {status.lag} (bound {bound})"
        if status.error_position is not None:
            detail += f", stalled at {status.error_position}"
        checks.append(s.Check(name=f"view:{runner.name}", ok=ok, detail=detail))
    if api.runtime is not None:
        started = api.runtime.ready.is_set()
        checks.append(
            s.Check(name="runtime", ok=started, detail="started" if started else "starting")
        )
    checks.extend(_roles(api))
    if parts.node.nats_configured:
        checks.append(_relay(api, bound))
    if api.runtime is not None and parts.node.agent_enabled:
        checks.append(_agent(api))
    return checks


def _roles(api: ApiContext) -> list[s.Check]:
    """Each role some Janus process has run (executor, scheduler, ...) must be running now."""
    try:
        summaries = read_roles(api.parts.views_engine)
    except SQLAlchemyError as error:
        return [s.Check(name="roles", ok=False, detail=f"unreadable: {type(error).__name__}")]
    return [s.Check(name=f"role:{r.role}", ok=r.ok, detail=r.text) for r in summaries]


def _agent(api: ApiContext) -> s.Check:
    """The in-process agent: its model can run (else how to install one), and its lag."""
    found = api.parts.statuses.agent()
    detail = f"{found['model']}: {found['state']}, position {found['position']}, lag {found['lag']}"
    return s.Check(name="agent", ok=found["state"] == "ready", detail=detail)


def _relay(api: ApiContext, bound: int) -> s.Check:
    """Where a relay feeds NATS: it reports running and connected, and keeps up with the log."""
    status = api.parts.statuses.relay()
    ok = status.state == "running" and status.connected and status.lag <= bound
    detail = (
        f"{status.state}, {'connected' if status.connected else 'not connected'}, "
        f"position {status.position}, lag {status.lag} (bound {bound})"
    )
    return s.Check(name="relay", ok=ok, detail=detail)


@router.get(
    "/v1/projections",
    response_model=list[s.ProjectionOut],
    responses=responses(401, 403, 503),
)
async def projections(read: Viewer) -> list[s.ProjectionOut]:
    """Each view's position, lag behind the log, state and last error.

    A viewer sees a stalled view's error as its kind and an error id; operators and above see the
    full text (which can hold SQL and column names), as the CLI and the log do."""
    details = read.principal.role.allows(Role.OPERATOR)
    return await read(lambda: _statuses(read.api, details))


def _error_for(error: str | None, details: bool) -> str | None:
    if error is None or details:
        return error
    kind = error.split(":", 1)[0].strip()
    kind = kind if kind.isidentifier() else "error"
    return f"{kind} (error id {error_id(error)})"


def _statuses(api: ApiContext, details: bool) -> list[s.ProjectionOut]:
    out = []
    for runner in api.parts.projections:
        status = runner.status()
        out.append(
            s.ProjectionOut(
                name=status.name,
                version=status.version,
                position=status.position,
                head=status.head,
                lag=status.lag,
                state=status.state,
                error=_error_for(status.error, details),
                error_position=status.error_position,
            )
        )
    return out
