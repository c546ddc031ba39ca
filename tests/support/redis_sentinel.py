"""A private Sentinel set-up for failover tests: a primary, 2 replicas and 3 sentinels.

Every process runs from a config file in its own directory, as in production, because
Sentinel writes its state there and has the data nodes rewrite theirs (CONFIG REWRITE after
REPLICAOF): a node restarted after a failover comes back with what the sentinels last told
it. The primary killed before it could be told comes back as a lone primary, and the
sentinels turn it into a replica some seconds later (they wait 8 s for newer news first).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.redis_cluster import admin, call, check_owner, free_ports, stop_all, wait_until
from tests.support.redis_server import Stoppable

MASTER_NAME = "hub"


class ConfiguredProcess(Stoppable):
    """redis-server or redis-sentinel on a free port, run from <directory>/<conf_name>.

    The file is written on the first start only: a restart reads what was rewritten.
    """

    def __init__(
        self,
        directory: Path,
        port: int,
        conf_name: str,
        lines: list[str],
        password: str | None = None,
    ) -> None:
        self.directory = directory
        self.password = password  # that clients must give (requirepass)
        self.conf = directory / conf_name
        self.port = port
        self.lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"logfile {directory / 'redis.log'}",
            *([f"requirepass {password}"] if password else []),
            *lines,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def alive(self) -> bool:
        return self.process is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, alive={self.alive})"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        return [binary, str(self.conf)]

    def start(self) -> None:
        if not self.conf.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.conf.write_text("\n".join(self.lines) + "\n")
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        log = self.directory / "redis.log"

        def answers() -> bool:
            if self.process is None or self.process.poll() is not None:
                check_owner(self.process, self.port, log)  # says why it exited
            with admin(self.port, self.password) as client:
                return bool(client.ping())

        wait_until(answers, 10, f"{self!r} answers PING; see {log}")
        check_owner(self.process, self.port, log, self.password)


class DataNode(ConfiguredProcess):
    def __init__(
        self,
        directory: Path,
        port: int,
        primary_port: int | None = None,
        password: str | None = None,
    ) -> None:
        lines = [
            *([f"masterauth {password}"] if password else []),
            'save ""',
            "appendonly no",
            # Replicas sync at once, not after the 5 s wait for more replicas.
            "repl-diskless-sync-delay 0",
        ]
        if primary_port is not None:
            lines.append(f"replicaof 127.0.0.1 {primary_port}")
        super().__init__(directory, port, "redis.conf", lines, password)

    def role(self) -> str:
        with admin(self.port, self.password) as client:
            return str(call(client, "ROLE")[0])

    def primary_port(self) -> int | None:
        """The port this node replicates from once its link is up, else None."""
        with admin(self.port, self.password) as client:
            info = client.info("replication")
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return None
        return int(info["master_port"])


class SentinelNode(ConfiguredProcess):
    """`data_password`: the data nodes'; `password`: this sentinel's own (it then also
    gives it to the other sentinels)."""

    def __init__(
        self,
        directory: Path,
        port: int,
        primary_port: int,
        quorum: int,
        data_password: str | None = None,
        password: str | None = None,
        down_after_ms: int = 2000,
    ) -> None:
        super().__init__(
            directory,
            port,
            "sentinel.conf",
            [
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}",
                *([f"sentinel auth-pass {MASTER_NAME} {data_password}"] if data_password else []),
                # Failover in seconds, not after the default 30 s. Not 1 s: a sentinel
                # counts the new primary silent from the switch but reconnects at most once
                # a second, so at 1 s it may find it down and, its peers' "down" answers
                # about the old primary counting for 5 s, fail it over again at once
                # (1 run in ~10 on Redis 7.0).
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} 5000",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            ],
            password,
        )

    def command(self) -> list[str]:
        sentinel = shutil.which("redis-sentinel")
        if sentinel is not None:
            return [sentinel, str(self.conf)]
        return [*super().command(), "--sentinel"]

    def primary_address(self) -> tuple[str, int]:
        with admin(self.port, self.password) as client:
            host, port = call(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return str(host), int(port)

    def sees_all(self, sentinels: int, replicas: int) -> bool:
        """Whether this sentinel knows the other sentinels and the replicas, all up."""
        with admin(self.port, self.password) as client:
            others = call(client, "SENTINEL", "SENTINELS", MASTER_NAME)
            known = call(client, "SENTINEL", "REPLICAS", MASTER_NAME)
        return (
            len(others) == sentinels - 1
            and len(known) == replicas
            and all(entry["flags"] in ("sentinel", "slave") for entry in [*others, *known])
        )


class SentinelSetup:
    """One primary, two replicas and three sentinels (quorum 2), stopped by stop().

    Every wait is bounded and raises TimeoutError naming what did not happen.
    """

    master_name = MASTER_NAME

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        password: str | None = None,
        sentinels_ask: bool = False,
        down_after_ms: int = 2000,
    ) -> None:
        """`password`: the data nodes ask for it; `sentinels_ask`: the sentinels too;
        `down_after_ms`: how long a silent primary takes to be failed over."""
        self.password = password
        ports = free_ports(1 + replicas + sentinels)
        primary = DataNode(directory / "data0", ports.pop(), password=password)
        self.nodes = [primary] + [
            DataNode(directory / f"data{i}", ports.pop(), primary.port, password)
            for i in range(1, replicas + 1)
        ]
        self.sentinels = [
            SentinelNode(
                directory / f"sentinel{i}",
                ports.pop(),
                primary.port,
                sentinels // 2 + 1,
                data_password=password,
                password=password if sentinels_ask else None,
                down_after_ms=down_after_ms,
            )
            for i in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """redis+sentinel:// naming every sentinel, with the password if there is one."""
        addresses = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        credentials = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{credentials}{addresses}/{self.master_name}"

    def node(self, port: int) -> DataNode:
        return next(node for node in self.nodes if node.port == port)

    def start(self, timeout: float = 30) -> None:
        """Starts the data nodes, waits for the replicas' links, then the sentinels, and
        waits until each sentinel knows the others and the replicas (a failover needs a
        majority of sentinels that know each other)."""
        for node in self.nodes:
            node.start()
        primary = self.nodes[0]
        wait_until(
            lambda: all(node.primary_port() == primary.port for node in self.nodes[1:]),
            timeout,
            f"the replicas replicate from {primary!r}",
        )
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(
            lambda: all(
                sentinel.sees_all(len(self.sentinels), len(self.nodes) - 1)
                for sentinel in self.sentinels
            ),
            timeout,
            "each sentinel knows the other sentinels and the replicas",
        )

    def current_primary(self) -> DataNode:
        """The primary as the first live sentinel names it."""
        sentinel = next(sentinel for sentinel in self.sentinels if sentinel.alive)
        return self.node(sentinel.primary_address()[1])

    def kill_primary(self) -> DataNode:
        """SIGKILL to the current primary; returns it."""
        primary = self.current_primary()
        primary.crash()
        return primary

    def wait_failover(self, old_port: int, timeout: float = 30) -> DataNode:
        """Until every live sentinel names the same primary, other than old_port, and that
        node answers ROLE as a master; returns it."""

        def promoted() -> bool:
            ports = {s.primary_address()[1] for s in self.sentinels if s.alive}
            if len(ports) != 1 or old_port in ports:
                return False
            return self.node(ports.pop()).role() == "master"

        wait_until(promoted, timeout, f"the sentinels promote a replica of port {old_port}")
        return self.current_primary()

    def restart(self, node: DataNode, timeout: float = 30) -> None:
        """Starts a killed data node again from its config file, then wait_replicas(): a
        former primary waits for the sentinels to turn it into a replica, about 10 s."""
        node.start()
        self.wait_replicas(timeout)

    def wait_replicas(self, timeout: float = 30) -> None:
        """Until every live data node but the current primary replicates from it with its
        link up (the sentinels repoint the other replicas after a promotion)."""
        wait_until(
            lambda: all(
                node.primary_port() == primary.port
                for primary in [self.current_primary()]
                for node in self.nodes
                if node.alive and node is not primary
            ),
            timeout,
            "every live replica replicates from the current primary",
        )

    def stop(self) -> None:
        """Stops every process still running; safe to call after a failed start."""
        stop_all([*self.sentinels, *self.nodes])
