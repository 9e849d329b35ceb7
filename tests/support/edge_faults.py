"""The four processes of an edge's catch-up, each SIGKILLable and restartable on its own.

The edge relay and the cloud ingester are ``janus`` subprocesses (a SIGKILL must hit a real
process, mid-publish or mid-transaction); the two nats-servers are the cluster's own. Every
restart reuses the same store, port and configuration: a crash, not a fresh start.
"""

from __future__ import annotations

from collections import Counter

from bootstrap.container import Janus
from bootstrap.relay import relay_status
from event_store.edge_sync import edge_stream_name, edge_subject_prefix
from tests.servers import unique_name, wait_until
from tests.support.edge import EdgeCluster, events_of_node
from tests.support.edge_procs import Proc, env_for

INGESTER, RELAY, EDGE_SERVER, HUB_SERVER = "ingester", "relay", "edge-server", "hub-server"
KINDS = (INGESTER, RELAY, EDGE_SERVER, HUB_SERVER)
PROGRESS_TIMEOUT = 150.0


class CatchUpFleet:
    """Edge relay + edge server -> hub server -> cloud ingester, for one edge node."""

    def __init__(self, cluster: EdgeCluster, node: str, edge: Janus, cloud: Janus) -> None:
        self.cluster, self.node, self.edge, self.cloud = cluster, node, edge, cloud
        edge_settings = edge.settings
        self._relay_env = env_for(
            edge_settings.home,
            JANUS_NATS_URL=cluster.edges[node].url,
            JANUS_NODE_ID=node,
            JANUS_STREAM_NAME=edge_stream_name(node),
            JANUS_SUBJECT_PREFIX=edge_subject_prefix(cluster.root, node),
            JANUS_STREAM_MAX_BYTES=str(edge_settings.stream_max_bytes),
            JANUS_POLL_INTERVAL_SECONDS="0.1",
            **_database(edge),
        )
        self._ingest_env = env_for(
            cloud.settings.home,
            JANUS_NATS_URL=cluster.hub.url,
            JANUS_EDGE_SUBJECT_ROOT=cluster.root,
            JANUS_EDGE_HUB_STREAM=unique_name("edges"),
            JANUS_EDGE_INGEST_BATCH_SIZE="5",  # many small transactions: more places to die in
            **_database(cloud),
        )
        self.relay = self._start_relay()
        self.ingester = self._start_ingester()

    def _start_relay(self) -> Proc:
        relay = Proc(["relay"], self._relay_env)
        wait_until(lambda: relay.printed("relay ready"), 60, message="the edge relay")
        return relay

    def _start_ingester(self) -> Proc:
        ingester = Proc(["edge", "ingest", "--node", self.node], self._ingest_env)
        wait_until(lambda: ingester.printed("edge ingest ready"), 60, message="the ingester")
        return ingester

    # -- what has moved ----------------------------------------------------------------------

    def copies(self) -> Counter[object]:
        """How many times the cloud holds each of the edge's events."""
        return Counter(event_id for event_id, _, _ in events_of_node(self.cloud.app, self.node))

    def ingested(self) -> int:
        return sum(self.copies().values())

    def relayed(self) -> int:
        return relay_status(self.edge).position

    def progress_of(self, kind: str) -> int:
        """What moves while ``kind`` works: the relay and edge server relay, the rest ingest."""
        return self.relayed() if kind in {RELAY, EDGE_SERVER} else self.ingested()

    # -- crashing ------------------------------------------------------------------------------

    def kill_and_restart(self, kind: str, after_progress: bool) -> None:
        """SIGKILL ``kind`` at once, or once it has moved something; then start it again."""
        if after_progress:
            before = self.progress_of(kind)
            wait_until(
                lambda: self.progress_of(kind) > before,
                PROGRESS_TIMEOUT,
                message=f"progress before killing the {kind}",
            )
        if kind == INGESTER:
            self.ingester.kill()
            assert self.ingester.proc.returncode == -9
            self.ingester = self._start_ingester()
        elif kind == RELAY:
            self.relay.kill()
            assert self.relay.proc.returncode == -9
            self.relay = self._start_relay()
        else:
            server = self.cluster.hub if kind == HUB_SERVER else self.cluster.edges[self.node]
            server.kill()
            server.start()

    def stop(self) -> None:
        for proc in (self.ingester, self.relay):
            proc.stop()


def _database(janus: Janus) -> dict[str, str]:
    url = janus.settings.database_url
    return {"JANUS_DATABASE_URL": url} if url else {}
