"""Jobs: schedule, list, read one with its recent fires, pause, resume, run now, remove."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from api import schemas as s
from api.actions import accepted, run_now
from api.deps import Cursor, FreshOperatorCall, FreshViewer, Limit, OperatorCall
from api.problems import invalid_field, responses
from commands import models as m
from domain.actions import InvalidAction

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

CHANGE = responses(400, 401, 403, 404, 409, 413, 422, 503)


@router.post("", status_code=202, response_model=s.CommandAccepted, responses=CHANGE)
async def schedule_job(body: s.JobRequest, call: OperatorCall) -> Response:
    """Schedule a job: 202 with its id and the log position it was written at. The action
    must be in the catalogue with parameters its schema allows (else 422 naming the field)."""
    commands = call.api.parts.commands
    try:
        commands.gate.check(body.action.name, dict(body.action.parameters))
    except InvalidAction as refused:
        raise invalid_field(("body", "action", *refused.loc), refused.message) from None
    return await call.respond(
        lambda: accepted(commands.schedule_job(body.command(), call.invocation)),
        status_code=202,
        location=lambda done: f"/v1/jobs/{done.id}",
    )


@router.get("", response_model=s.Page[s.JobOut], responses=responses(401, 403, 422, 503))
async def list_jobs(
    read: FreshViewer,
    include_removed: bool = False,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> s.Page[s.JobOut]:
    """Jobs in the order they were scheduled, with their fire counts."""
    return await read(lambda: read.api.reads.jobs(include_removed, limit, cursor))


@router.get("/{job_id}", response_model=s.JobDetail, responses=responses(401, 403, 404, 422, 503))
async def get_job(read: FreshViewer, job_id: UUID) -> s.JobDetail:
    """One job with its most recent fires."""
    return await read(lambda: read.api.reads.job(job_id))


@router.post("/{job_id}/pause", response_model=s.CommandAccepted, responses=CHANGE)
async def pause_job(job_id: UUID, call: OperatorCall) -> Response:
    """Pause a job: it stops firing until resumed."""
    cmd = m.PauseJob(job_id=job_id)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.pause_job(cmd, call.invocation)))


@router.post("/{job_id}/resume", response_model=s.CommandAccepted, responses=CHANGE)
async def resume_job(job_id: UUID, call: OperatorCall) -> Response:
    """Resume a paused job."""
    cmd = m.ResumeJob(job_id=job_id)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.resume_job(cmd, call.invocation)))


@router.post("/{job_id}/run", response_model=s.ManualFire, responses=CHANGE)
async def run_job(job_id: UUID, call: FreshOperatorCall) -> Response:
    """Run a job now, recorded as a manual fire; answers with how the fire went. Pass the
    position that created or resumed the job as ?min_position when it is new."""
    return await call.respond(lambda: run_now(call, job_id), replays_itself=False)


@router.delete("/{job_id}", response_model=s.CommandAccepted, responses=CHANGE)
async def remove_job(job_id: UUID, call: OperatorCall) -> Response:
    """Remove a job for good; its fires stay in the log."""
    cmd = m.RemoveJob(job_id=job_id)
    commands = call.api.parts.commands
    return await call.respond(lambda: accepted(commands.remove_job(cmd, call.invocation)))
