"""Story tests over HTTP: a real uvicorn process (the API with its in-process runtime) on real
Postgres, SIGKILLed and started again. The simulated door lock's own ledger says how many times
the world was touched."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from adapters.effects import Ledger
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.invocation import Invocation
from commands.keys import CreateApiKey, KeyService
from commands.models import SubmitGoal
from domain.api_key import Role
from domain.effect import Effect, EffectStatus, effect_id_for
from domain.meta import Actor, ActorKind
from tests.servers import free_port, unique_name, wait_until
from tests.support.api import request_confirmation
from tests.support.api_server import ApiServer, ServerExited

ROOT = Invocation(Actor(ActorKind.USER, "root", role="admin"))


@pytest.fixture
def settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "janus", database_url=pg_url, poll_interval_seconds=0.05)


@pytest.fixture
def janus(settings: Settings) -> Iterator[Janus]:
    """The test's own handle on the store: it plays the agent and counts what happened."""
    built = Janus.build(settings)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def servers() -> Iterator[list[ApiServer]]:
    started: list[ApiServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.kill()


@pytest.fixture
def tokens(janus: Janus) -> dict[str, str]:
    keys = KeyService(janus.commands.runner)
    made = {}
    for name in ("viewer", "operator", "approver", "approver-2"):
        role = Role(name.split("-")[0])
        key_name = unique_name(name).replace("_", "-")
        made[name] = keys.create_key(CreateApiKey(name=key_name, role=role), ROOT).token
    return made


def start(servers: list[ApiServer], settings: Settings, port: int, **env: str) -> ApiServer:
    server = ApiServer(settings, port, **env).start()
    servers.append(server)
    return server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def effect(janus: Janus, confirmation_id: UUID) -> Effect | None:
    effect_id = effect_id_for(confirmation_id)
    if effect_id not in janus.app.repository:
        return None
    found: Effect = janus.app.repository.get(effect_id)
    return found


def succeeded(janus: Janus, confirmation_id: UUID) -> bool:
    found = effect(janus, confirmation_id)
    return found is not None and found.status is EffectStatus.SUCCEEDED


def executor_caught_up(janus: Janus) -> bool:
    return janus.app.tracked_position("executor") >= janus.app.head()


def executions(janus: Janus, confirmation_id: UUID) -> int:
    ledger = Ledger(janus.settings.home / "world" / "door_lock.sqlite")
    return len(ledger.executions(str(confirmation_id)))


def test_a_pending_confirmation_survives_a_server_sigkill_and_its_grant_executes_once(
    janus: Janus, settings: Settings, servers: list[ApiServer], tokens: dict[str, str]
) -> None:
    port = free_port()
    first = start(servers, settings, port)
    with httpx.Client(base_url=first.url, timeout=30) as client:
        submitted = client.post(
            "/v1/goals", json={"text": "let the plumber in"}, headers=bearer(tokens["operator"])
        )
        assert submitted.status_code == 202, submitted.text
        _, confirmation_id = request_confirmation(janus, hazard="high")
        head = janus.app.head()
        pending = client.get(
            "/v1/confirmations",
            params={"status": "pending", "min_position": head},
            headers=bearer(tokens["viewer"]),
        ).json()["items"]
        assert [c["id"] for c in pending] == [str(confirmation_id)]

    first.kill()
    second = start(servers, settings, port)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        still = client.get(
            "/v1/confirmations",
            params={"status": "pending", "min_position": head},
            headers=bearer(tokens["viewer"]),
        ).json()["items"]
        assert [c["id"] for c in still] == [str(confirmation_id)]
        assert still[0]["hazard"] == "high" and still[0]["time_left_seconds"] > 0

        grant = f"/v1/confirmations/{confirmation_id}/grant"
        granted = client.post(grant, headers=bearer(tokens["approver"]))
        assert (granted.status_code, granted.json()["outcome"]) == (200, "granted")
        wait_until(lambda: succeeded(janus, confirmation_id), timeout=30, message="effect")

        again = client.post(grant, headers=bearer(tokens["approver"]))
        assert (again.status_code, again.json()["outcome"]) == (200, "already_granted")
        wait_until(lambda: executor_caught_up(janus), timeout=30, message="executor")
        assert executions(janus, confirmation_id) == 1

        effects = client.get(
            "/v1/effects",
            params={"outcome": "succeeded", "min_position": janus.app.head()},
            headers=bearer(tokens["viewer"]),
        ).json()["items"]
        assert [e["confirmation_id"] for e in effects] == [str(confirmation_id)]

    second.stop()
    logs = first.log() + second.log() + "".join(first.stdout + second.stdout)
    events = "".join(str(logged.event.__dict__) for logged in janus.reader.iterate())
    for token in tokens.values():
        # "jns_<id>_<secret>": the secret is base64url, which may itself hold "_".
        secret = token.split("_", 2)[2]
        assert secret not in logs and secret not in events


def test_two_clients_granting_at_once_execute_once_and_agree(
    janus: Janus, settings: Settings, servers: list[ApiServer], tokens: dict[str, str]
) -> None:
    server = start(servers, settings, free_port())
    _, confirmation_id = request_confirmation(janus, hazard="high")
    barrier = threading.Barrier(2)

    def grant(token: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            barrier.wait()
            return client.post(f"/v1/confirmations/{confirmation_id}/grant", headers=bearer(token))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(grant, [tokens["approver"], tokens["approver-2"]]))
    assert [a.status_code for a in answers] == [200, 200]
    assert sorted(a.json()["outcome"] for a in answers) == ["already_granted", "granted"]
    assert {a.json()["id"] for a in answers} == {str(confirmation_id)}

    wait_until(lambda: succeeded(janus, confirmation_id), timeout=30, message="effect")
    wait_until(lambda: executor_caught_up(janus), timeout=30, message="executor")
    assert executions(janus, confirmation_id) == 1


def test_one_client_sending_the_same_keyed_grant_twice_at_once_gets_one_answer(
    janus: Janus, settings: Settings, servers: list[ApiServer], tokens: dict[str, str]
) -> None:
    server = start(servers, settings, free_port())
    _, confirmation_id = request_confirmation(janus, hazard="low")
    barrier = threading.Barrier(2)

    def grant(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            barrier.wait()
            return client.post(
                f"/v1/confirmations/{confirmation_id}/grant",
                headers={**bearer(tokens["operator"]), "Idempotency-Key": "grant-1"},
            )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(grant, [0, 1])
    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert first.json()["outcome"] == "granted"
    wait_until(lambda: executor_caught_up(janus), timeout=30, message="executor")
    assert executions(janus, confirmation_id) == 1


class StreamReader:
    """An EventSource-like client: follows the stream and remembers the last event id."""

    def __init__(self, url: str, token: str, resume: str | None = None) -> None:
        self.url, self.token, self.last = url, token, resume
        self.received: list[int] = []

    def read(self, upto: int | None = None) -> None:
        """Read until position ``upto`` (or forever); a dropped connection ends the read."""
        headers = {**bearer(self.token), **({"Last-Event-ID": self.last} if self.last else {})}
        params: dict[str, Any] = {} if self.last else {"after": 0}
        timeout = httpx.Timeout(30, read=20)
        with httpx.Client(base_url=self.url, timeout=timeout) as client:
            try:
                with client.stream(
                    "GET", "/v1/events/stream", params=params, headers=headers
                ) as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            self.last = line[4:]
                            self.received.append(int(self.last))
                            if upto is not None and int(self.last) >= upto:
                                return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                return  # the server died mid-stream: resume from self.last, as EventSource does


def test_the_event_stream_resumes_from_last_event_id_across_a_server_restart(
    janus: Janus, settings: Settings, servers: list[ApiServer], tokens: dict[str, str]
) -> None:
    port = free_port()
    first = start(servers, settings, port)
    agent = Invocation(Actor(ActorKind.AGENT, "planner"))
    for i in range(30):
        janus.commands.submit_goal(SubmitGoal(text=f"before {i}"), agent)

    before = StreamReader(first.url, tokens["viewer"])
    thread = threading.Thread(target=before.read)
    thread.start()
    wait_until(lambda: len(before.received) >= 10, message="first events streamed")
    for i in range(20):
        janus.commands.submit_goal(SubmitGoal(text=f"during {i}"), agent)
    first.kill()
    thread.join(60)
    assert not thread.is_alive() and before.last is not None

    for i in range(20):
        janus.commands.submit_goal(SubmitGoal(text=f"while down {i}"), agent)
    second = start(servers, settings, port)
    after = StreamReader(second.url, tokens["viewer"], resume=before.last)
    after.read(upto=janus.app.head())

    in_log = [logged.position for logged in janus.reader.iterate()]
    assert before.received + after.received == in_log
    assert after.received and len(set(in_log)) == len(in_log)


def test_auth_off_is_refused_on_a_public_address_and_loud_on_loopback(
    settings: Settings, tmp_path: Path, servers: list[ApiServer]
) -> None:
    public = ApiServer(settings, free_port(), JANUS_API_HOST="0.0.0.0", JANUS_API_AUTH="off")
    with pytest.raises(ServerExited):
        public.start()
    assert public.wait_exit() == 1
    assert "JANUS_API_AUTH=off is refused" in public.log()

    embedded = Settings(home=tmp_path / "embedded", poll_interval_seconds=0.05)
    local = start(servers, embedded, free_port())
    assert "AUTHENTICATION IS OFF" in local.log()
    assert "auth OFF" in "".join(local.stdout)
    with httpx.Client(base_url=local.url, timeout=30) as client:
        assert client.post("/v1/goals", json={"text": "trusting"}).status_code == 202

    keyed = start(servers, settings, free_port())
    with httpx.Client(base_url=keyed.url, timeout=30) as client:
        assert client.get("/v1/goals").status_code == 401
