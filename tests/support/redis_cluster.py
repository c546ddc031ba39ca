"""A private Redis Cluster for failover tests: 3 primaries and 3 replicas on free ports.

Nodes are tests.support.redis_server.RedisServer processes in cluster mode, each in its own
directory, so a node killed with SIGKILL restarts on the same port with its nodes.conf and
rejoins the cluster (as a replica if its replica was promoted meanwhile). Roles are never
cached: they are asked of the nodes, since failovers move them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry

from tests.support.redis_server import RedisServer

# A node is failed after 1 s without answers, so failover takes seconds, not the default 15.
NODE_TIMEOUT_MS = 1000
# Past Redis's own limit for a manual failover (5 s): by then it has taken effect or not.
_MANUAL_FAILOVER_WAIT = 7.0


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.splitlines():
        fields = line.split(" ")
        node_id, address, flags, master = fields[:4]
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated, not served
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        views.append(
            NodeView(
                node_id=node_id,
                port=int(address.split("@")[0].rsplit(":", 1)[1]),
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                slots=tuple(slots),
            )
        )
    return views


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls until condition() is true; Redis errors on the way (a node loading, down) are
    retried, and the last one is told if the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except redis.RedisError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"not within {timeout} s: {what}{detail}")
        time.sleep(0.05)


def free_ports(count: int) -> list[int]:
    """Distinct free ports: held open together, so the kernel hands none out twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class PortTaken(RuntimeError):
    """A port picked as free was taken before the server bound it: pick others."""


def check_owner(
    process: subprocess.Popen[bytes] | None, port: int, log: Path, password: str | None = None
) -> None:
    """Raises unless `process` is running and is what answers on `port`: a server that
    lost its port exits, and the PONG came from whoever holds it."""
    if process is None or process.poll() is not None:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Address already in use" in text:
            raise PortTaken(f"port {port} (or its bus port) was taken; see {log}")
        raise RuntimeError(f"the server for port {port} exited; see {log}")
    with admin(port, password) as client:
        if client.info("server").get("process_id") != process.pid:
            raise PortTaken(f"port {port} answers for another process")


class Process(Protocol):
    process: subprocess.Popen[bytes] | None


@contextmanager
def admin(port: int, password: str | None = None) -> Iterator[redis.Redis]:
    """A short-lived sync client: admin calls must fail fast on a dead or stopped node,
    hence no retries (redis-py's default turns one 2 s timeout into 27 s). RESP3, so that
    SENTINEL's tables come as dicts."""
    client = redis.Redis(
        port=port,
        password=password,
        decode_responses=True,
        protocol=3,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        client.close()


def call(client: redis.Redis, *args: str | int) -> Any:
    """A raw command, typed here once (redis-py leaves execute_command untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class ClusterNode(RedisServer):
    def __init__(
        self, directory: Path, port: int, bus_port: int, tls: Sequence[str | int | Path] = ()
    ) -> None:
        super().__init__(directory)
        self.port = port
        # The bus port is picked apart from the data port (cluster-port, Redis 7): the
        # default port + 10000 may be taken or past 65535 for an ephemeral data port.
        self.bus_port = bus_port
        self.extra = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-port", str(bus_port),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # A replica promotes however long it was cut off: tests kill and restart.
            "--cluster-replica-validity-factor", "0",
            # Replicas sync at once, not after the 5 s wait for more replicas.
            "--repl-diskless-sync-delay", "0",
            *map(str, tls),
        )  # fmt: skip

    def start(self) -> None:
        try:
            super().start()
        except RuntimeError:
            check_owner(self.process, self.port, self.directory / "redis.log")
            raise
        check_owner(self.process, self.port, self.directory / "redis.log")

    @property
    def alive(self) -> bool:
        return self.process is not None

    def __repr__(self) -> str:
        return f"ClusterNode(port={self.port}, alive={self.alive})"

    def cluster_nodes(self) -> list[NodeView]:
        with admin(self.port) as client:
            return parse_cluster_nodes(str(call(client, "CLUSTER", "NODES")))

    def myself(self) -> NodeView:
        return next(view for view in self.cluster_nodes() if "myself" in view.flags)


class RedisClusterNodes:
    """N primaries with one replica each, started by start() and torn down by stop().

    Every wait is bounded and raises TimeoutError naming what did not happen.
    """

    def __init__(
        self, directory: Path, *, primaries: int = 3, certs: dict[str, Path] | None = None
    ) -> None:
        self.directory = directory
        self.primary_count = primaries
        self.certs = certs
        ports = free_ports((6 if certs else 4) * primaries)
        self.tls_ports = ports[4 * primaries :]
        self.nodes = [
            ClusterNode(directory / f"node{i}", ports[2 * i], ports[2 * i + 1], self._tls(i))
            for i in range(2 * primaries)
        ]

    def _tls(self, index: int) -> tuple[str | int | Path, ...]:
        """With certificates, a TLS port besides the plain one (which the fixture's own
        administration uses), and TLS on the cluster bus and for replication. Redis names
        each node's TLS port to clients connected over TLS, its plain port to the others."""
        if self.certs is None:
            return ()
        port = self.tls_ports[index]
        return (
            "--tls-port", port,
            "--tls-cluster", "yes",
            "--tls-replication", "yes",
            "--tls-cert-file", self.certs["cert"],
            "--tls-key-file", self.certs["key"],
            "--tls-ca-cert-file", self.certs["ca"],
            "--tls-auth-clients", "no",
        )  # fmt: skip

    @property
    def seed_url(self) -> str:
        """The first three nodes as seeds: a client must find the cluster from any of them.
        With certificates, rediss:// to their TLS ports, trusting the test CA."""
        if self.certs:
            seeds = ",".join(f"127.0.0.1:{port}" for port in self.tls_ports[:3])
            return f"rediss://{seeds}?ssl_ca_certs={self.certs['ca']}"
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"redis://{seeds}"

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive]

    def start(self, timeout: float = 30) -> None:
        """Starts the nodes, builds the cluster by hand and waits until it is stable.

        By hand rather than redis-cli --cluster create, which sleeps a second per check.
        """
        for node in self.nodes:
            node.start()
        ids = []
        for epoch, node in enumerate(self.nodes, start=1):
            with admin(node.port) as client:
                ids.append(str(call(client, "CLUSTER", "MYID")))
                # Distinct epochs up front, as redis-cli does: no collisions to resolve.
                call(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        step = REDIS_CLUSTER_HASH_SLOTS // self.primary_count
        for i, node in enumerate(self.nodes[: self.primary_count]):
            low = i * step
            high = REDIS_CLUSTER_HASH_SLOTS - 1 if i == self.primary_count - 1 else low + step - 1
            with admin(node.port) as client:
                call(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
        with admin(self.nodes[0].port) as client:
            for node in self.nodes[1:]:
                call(client, "CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)

        def all_met() -> bool:
            for node in self.nodes:
                views = node.cluster_nodes()
                if len(views) != len(self.nodes) or any(v.failing for v in views):
                    return False
            return True

        wait_until(all_met, timeout, "every node knows every other")
        for i, node in enumerate(self.nodes[self.primary_count :]):
            with admin(node.port) as client:
                call(client, "CLUSTER", "REPLICATE", ids[i])
        self.wait_stable(timeout)

    def primaries(self) -> list[ClusterNode]:
        """Live nodes that say they are primaries serving slots."""
        return [node for node in self.live() if (me := node.myself()).is_primary and me.slots]

    def replicas(self) -> list[ClusterNode]:
        """Live nodes that say they are replicas."""
        return [node for node in self.live() if not node.myself().is_primary]

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        primary_id = primary.myself().node_id
        return [node for node in self.live() if node.myself().master_id == primary_id]

    def primary_for(self, key: str) -> ClusterNode:
        """The node serving the key's slot, as a live node sees the slot map."""
        slot = key_slot(key.encode())
        for view in self.live()[0].cluster_nodes():
            if view.is_primary and any(low <= slot <= high for low, high in view.slots):
                return self.node(view.port)
        raise LookupError(f"slot {slot} is not served")

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: no goodbye to the cluster, which notices after the node timeout."""
        node.crash()

    def restart(self, node: ClusterNode, timeout: float = 30) -> None:
        """Starts a killed node again (same port, directory and nodes.conf) and waits until
        the cluster is stable with it: a primary that was replaced comes back as a replica."""
        node.start()
        self.wait_stable(timeout)

    def graceful_failover(self, primary: ClusterNode, timeout: float = 30) -> ClusterNode:
        """CLUSTER FAILOVER on a replica of primary (no write is lost: the primary stops,
        the replica catches up, then takes over); returns the new primary once stable."""
        replica = self.replicas_of(primary)[0]
        deadline = time.monotonic() + timeout
        while True:
            # Redis gives a manual failover 5 s, and the other primaries refuse to vote
            # for a shard they voted for within two node timeouts (a failover just before):
            # such a failover is dropped without a word, so it is asked for again.
            with admin(replica.port) as client:
                call(client, "CLUSTER", "FAILOVER")
            try:
                wait_until(
                    lambda: replica.myself().is_primary and not primary.myself().is_primary,
                    max(0.0, min(_MANUAL_FAILOVER_WAIT, deadline - time.monotonic())),
                    f"replica {replica.port} took over from {primary.port}",
                )
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
        self.wait_stable(timeout)
        return replica

    def wait_stable(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok, sees no live node failing, and
        agrees on who serves the slots; every slot is served by a live primary and every
        live replica's link to its primary is up. Killed nodes are ignored."""
        wait_until(
            self._stable, timeout, f"the cluster is stable; see {self.directory}/*/redis.log"
        )

    def _stable(self) -> bool:
        live = self.live()
        ports = {node.port for node in live}
        selves = {node.port: node.myself() for node in live}
        served = {
            (view.port, view.slots) for view in selves.values() if view.is_primary and view.slots
        }
        if sum(high - low + 1 for _, slots in served for low, high in slots) != (
            REDIS_CLUSTER_HASH_SLOTS
        ):
            return False
        for node in live:
            with admin(node.port) as client:
                if "cluster_state:ok" not in str(call(client, "CLUSTER", "INFO")):
                    return False
                if not selves[node.port].is_primary:
                    link = client.info("replication").get("master_link_status")
                    if link != "up":
                        return False
            views = [view for view in node.cluster_nodes() if view.port in ports]
            if any(view.failing for view in views):
                return False
            seen = {(view.port, view.slots) for view in views if view.is_primary and view.slots}
            if seen != served:
                return False
        return True

    def stop(self) -> None:
        """Stops every node still running; safe to call after a failed start."""
        stop_all(self.nodes)


def stop_all(servers: Sequence[Process]) -> None:
    """SIGTERM to all at once (a primary's shutdown waits for its replicas, so one by one
    adds up), then SIGKILL to any still running after 10 s."""
    for server in servers:
        if server.process is not None:
            server.process.terminate()
    for server in servers:
        if server.process is not None:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)
            server.process = None
