"""A local Redis Cluster of real `redis-server` processes on 127.0.0.1, for the shared
tier's tests (slots, failover, a node rejoining): predial's own test harness, beside
`predial.testing.RedisServer` on which it builds.

```python
with RedisClusterServers(masters=3, replicas=1) as cluster:
    cluster.url                                  # redis://127.0.0.1:PORT (a master)
    cluster.failover(cluster.masters()[0])       # SIGKILL a master, its replica takes over
    cluster.heal()                               # the killed node rejoins as a replica
```
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import quote

from predial.testing._redis_server import (
    INSTALL_HINT,
    LOOPBACK,
    RedisServer,
    RedisServerError,
    _fields,
    _text,
    find_redis_cli,
    require_redis_server,
)

CLUSTER_SLOTS = 16384


@dataclass(frozen=True)
class _Node:
    """One line of `CLUSTER NODES`."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    @property
    def is_master(self) -> bool:
        return "master" in self.flags


def _parse_nodes(text: str) -> list[_Node]:
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        slots = []
        for spec in parts[8:]:
            if spec.startswith("["):  # a slot being migrated or imported
                continue
            first, _, last = spec.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            _Node(
                node_id=parts[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                slots=tuple(sorted(slots)),
            )
        )
    return nodes


class RedisClusterServers:
    """A local Redis Cluster: `masters` master nodes (at least 3) and `replicas`
    replicas of each, every one a `RedisServer` with `cluster-enabled yes` on its own
    free port of 127.0.0.1, joined by `redis-cli --cluster create`.

    `start()` returns once every node reports `cluster_state:ok` with all 16384 slots
    covered, sees every other node, and every replica's link to its master is up.

    Node settings: `cluster-node-timeout` (`node_timeout_ms`, 1000 ms by default, so a
    failover takes about 2 s), `cluster-replica-validity-factor 0` (a replica always
    stands for election, however long it has been cut off: a paused-then-killed
    master still fails over) and `repl-diskless-sync-delay 0` (replicas sync at once
    rather than after the default 5 s).
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        password: str | None = None,
        args: Sequence[str] = (),
        node_timeout_ms: int = 1000,
        startup_timeout: float = 30.0,
        executable: str | None = None,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        self.master_count = masters
        self.replicas = replicas
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout = startup_timeout
        self.executable = executable
        self._args = tuple(args)
        self._nodes: list[RedisServer] = []

    def __repr__(self) -> str:
        return f"<RedisClusterServers {self.master_count}+{self.replicas} ports={self.ports}>"

    # -- nodes and addresses

    @property
    def nodes(self) -> tuple[RedisServer, ...]:
        """Every node, in creation order (the first `masters` were created masters)."""
        return tuple(self._nodes)

    @property
    def ports(self) -> list[int]:
        """The port of every node, in creation order, live or not."""
        return [node.port for node in self._nodes]

    def node(self, port: int) -> RedisServer:
        """The node on `port`."""
        for node in self._nodes:
            if node.port == port:
                return node
        raise RedisServerError(f"no node of this cluster on port {port}")

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """`(host, port)` of every running node: the startup nodes of a cluster client."""
        return [(LOOPBACK, node.port) for node in self._nodes if node.running]

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT` of the first current master (with `:password@`)."""
        userinfo = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{userinfo}{LOOPBACK}:{self.masters()[0]}"

    def _view(self, node: RedisServer | None = None) -> list[_Node]:
        """`CLUSTER NODES` as seen by `node` (by default the first running, unpaused one)."""
        if node is None:
            node = next(
                (n for n in self._nodes if n.running and not n.paused),
                None,
            )
            if node is None:
                raise RedisServerError(f"{self!r}: no node is running")
        return _parse_nodes(_text(node.command("CLUSTER", "NODES")))

    def masters(self) -> list[int]:
        """The ports of the current masters serving slots (failed ones left out), by
        their first slot: the master of slot 0 first."""
        serving = [n for n in self._view() if n.is_master and n.slots and not n.failed]
        return [n.port for n in sorted(serving, key=lambda n: n.slots[0])]

    def replicas_of(self, master_port: int) -> list[int]:
        """The ports of the running replicas of the master on `master_port`."""
        view = self._view()
        master = next((n for n in view if n.port == master_port), None)
        if master is None:
            raise RedisServerError(f"no node of this cluster on port {master_port}")
        return [
            n.port
            for n in view
            if n.master_id == master.node_id and not n.failed and self.node(n.port).running
        ]

    def node_for_key(self, key: str | bytes) -> int:
        """The port of the master serving `key`'s slot (`CLUSTER KEYSLOT`, hash tags
        included)."""
        nodes = [n for n in self._nodes if n.running and not n.paused]
        if not nodes:
            raise RedisServerError(f"{self!r}: no node is running")
        slot = nodes[0].command("CLUSTER", "KEYSLOT", key)
        assert isinstance(slot, int)
        for node in self._view(nodes[0]):
            if node.is_master and not node.failed:
                if any(first <= slot <= last for first, last in node.slots):
                    return node.port
        raise RedisServerError(f"no live master serves slot {slot}")

    # -- life cycle

    def start(self) -> RedisClusterServers:
        """Start every node, create the cluster and wait until it is healthy (within
        `startup_timeout`). On failure every node is stopped before the error rises."""
        if self._nodes:
            raise RedisServerError(f"{self!r} was already started")
        executable = self.executable or require_redis_server()
        cli = find_redis_cli(executable)
        if cli is None:
            raise RedisServerError(f"no redis-cli (nor valkey-cli) on PATH; {INSTALL_HINT}")
        node_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]
        deadline = time.monotonic() + self.startup_timeout
        try:
            for _ in range(self.master_count * (1 + self.replicas)):
                node = RedisServer(
                    password=self.password,
                    args=[*node_args, *self._args],
                    executable=executable,
                    startup_timeout=self.startup_timeout,
                )
                self._nodes.append(node)
                node._spawn()  # all at once; then wait for each
            for node in self._nodes:
                node.wait_ready(max(0.1, deadline - time.monotonic()))
            self._create(cli, deadline)
            self.wait_healthy(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, cli: str, deadline: float) -> None:
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password  # not `-a`: no password in argv
        command = [
            cli,
            "--cluster",
            "create",
            *(f"{LOOPBACK}:{port}" for port in self.ports),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RedisServerError(
                f"`redis-cli --cluster create` did not finish within {self.startup_timeout} s"
            ) from error
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RedisServerError(
                f"`{' '.join(command)}` failed (exit code {done.returncode}):\n"
                f"{output[-3000:]}\n{self._logs()}"
            )

    def _health_problem(self) -> str | None:
        """What keeps the cluster from being healthy right now, or None."""
        live = {node.port for node in self._nodes if node.running}
        agreed: tuple[tuple[int, bool, int | None, tuple[tuple[int, int], ...]], ...] | None
        agreed = None
        for node in self._nodes:
            if not node.running or node.paused:
                continue
            info = _fields(_text(node.command("CLUSTER", "INFO", timeout=1.0)))
            if info.get("cluster_state") != "ok":
                return f"{node.port}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_ok") != str(CLUSTER_SLOTS):
                return f"{node.port}: cluster_slots_ok:{info.get('cluster_slots_ok')}"
            if info.get("cluster_known_nodes") != str(len(self._nodes)):
                return f"{node.port}: cluster_known_nodes:{info.get('cluster_known_nodes')}"
            view = self._view(node)
            serving = [n for n in view if n.is_master and n.slots]
            if len(serving) != self.master_count:
                return f"{node.port} sees {len(serving)} masters with slots"
            for other in view:
                if other.port in live and other.failed:
                    return f"{node.port} sees {other.port} as {','.join(sorted(other.flags))}"
                if other.port not in live and other in serving:
                    return f"{node.port} sees the stopped {other.port} as a master"
            ports = {n.node_id: n.port for n in view}
            layout = tuple(
                sorted(
                    (n.port, n.is_master, ports.get(n.master_id or ""), n.slots)
                    for n in view
                    if n.port in live
                )
            )
            if agreed is None:
                agreed = layout
            elif layout != agreed:
                return f"the nodes do not agree yet on the layout ({node.port} differs)"
            me = next(n for n in view if "myself" in n.flags)
            if not me.is_master:
                replication = node.info("replication")
                if replication.get("master_link_status") != "up":
                    return (
                        f"{node.port}: master_link_status:{replication.get('master_link_status')}"
                    )
        return None

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every running node reports `cluster_state:ok`, all 16384 slots
        ok, every node known, exactly `masters` masters serving slots none of which is
        down, no running node flagged failed, every running node agreeing on who is the
        master of which slots and the replica of whom, and every replica linked to its
        master;
        `RedisServerError` saying what was still wrong after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                problem = self._health_problem()
            except (OSError, RedisServerError) as error:
                problem = repr(error)
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    f"the cluster was not healthy within {timeout} s: {problem}\n{self._logs()}"
                )
            time.sleep(0.05)

    def failover(self, master_port: int, *, crash: bool = True, timeout: float = 15.0) -> int:
        """Make a replica of the master on `master_port` take over; return its port.

        First, when the master answers, waits (bounded) until the replica has every
        write the master has (equal replication offsets), so writes made before the
        call survive. Then, with `crash=True` (the default), SIGKILLs the master, as a
        crash (also when it is paused or already killed), and the cluster fails over by
        itself: a replica notices within `cluster-node-timeout`, is elected and
        promoted (about 2 s with 1000 ms); the killed node stays down until `heal()`.
        With `crash=False`, sends `CLUSTER FAILOVER` to the replica: a manual failover
        coordinated with the live master, which becomes its replica (about 0.1 s).
        Returns once a replica of that master is a master and the cluster is healthy
        again; `RedisServerError` saying what is missing after `timeout` seconds.
        """
        if master_port not in self.masters():
            raise RedisServerError(f"{master_port} is not a master serving slots")
        candidates = [
            self.node(port) for port in self.replicas_of(master_port) if not self.node(port).paused
        ]
        if not candidates:
            raise RedisServerError(
                f"the master on {master_port} has no running replica to fail over to"
            )
        master = self.node(master_port)
        answering = master.running and not master.paused
        if not crash and not answering:
            raise RedisServerError(
                f"the master on {master_port} is down or paused: a manual failover needs "
                "it; use crash=True"
            )
        deadline = time.monotonic() + timeout
        if answering:
            self._wait_synced(master, candidates[0], deadline)
        if crash:
            master.kill()
        else:
            candidates[0].command("CLUSTER", "FAILOVER")
        while True:  # with several replicas, any of them may win the election
            for replica in candidates:
                try:
                    if replica.info("replication").get("role") == "master":
                        self.wait_healthy(max(0.1, deadline - time.monotonic()))
                        return replica.port
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    f"no replica of {master_port} ({[r.port for r in candidates]}) was "
                    f"promoted within {timeout} s\n{self._logs()}"
                )
            time.sleep(0.05)

    def _wait_synced(self, master: RedisServer, replica: RedisServer, deadline: float) -> None:
        while True:
            wanted = int(master.info("replication").get("master_repl_offset", "0"))
            state = replica.info("replication")
            if (
                state.get("master_link_status") == "up"
                and int(state.get("slave_repl_offset", "-1")) >= wanted
            ):
                return
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    f"the replica on {replica.port} did not catch up with its master "
                    f"on {master.port} (offset {wanted}): {state}"
                )
            time.sleep(0.02)

    def heal(self, timeout: float = 15.0) -> None:
        """Resume paused nodes, restart killed ones on their ports (a killed master
        rejoins as a replica of the node that took over), and wait until healthy."""
        for node in self._nodes:
            if node.paused:
                node.resume()
            elif not node.running:
                node.restart()
        self.wait_healthy(timeout)

    def flush(self) -> None:
        """`FLUSHALL` on every master (the replicas follow)."""
        for port in self.masters():
            self.node(port).flush()

    def stop(self) -> None:
        """Kill every node (SIGKILL: nothing persists anyway) and remove their
        directories. Safe to call twice."""
        for node in self._nodes:
            node.kill()
        for node in self._nodes:
            node.stop()

    def _logs(self, lines: int = 8) -> str:
        return "\n".join(
            f"-- node {node.port} ({'running' if node.running else 'down'}), log ends:\n"
            f"{node.log_tail(lines)}"
            for node in self._nodes
        )

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
