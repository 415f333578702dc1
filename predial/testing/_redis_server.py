"""Real `redis-server` processes on 127.0.0.1, started and stopped by tests and benchmarks.

The shared tier (`predial.RedisTier`) is tested against real Redis, not a fake: what
matters is how it behaves when a real server refuses a connection, stalls, restarts
empty or fails over, and only a real server does those things faithfully. These
helpers start `redis-server` (or `valkey-server`) on a free port of 127.0.0.1 in a
temporary directory with persistence off, and a local Redis Cluster the same way:

```python
from predial.testing import RedisServer

with RedisServer(password="s3cret") as server:   # redis://:s3cret@127.0.0.1:PORT/0
    server.kill()                                # a crash: connections refused
    server.restart()                             # same port, empty, answers PING
    server.pause()                               # SIGSTOP: connects, never answers
    server.resume()

```

Process control and readiness use only the standard library (a raw RESP `PING` on a
socket), so the helpers do not need redis-py. Only 127.0.0.1 is ever bound or
connected to; every port comes from binding a socket to 127.0.0.1:0. A server still
running when the interpreter exits is killed then (`atexit`), and its directory removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeAlias
from urllib.parse import quote

__all__ = [
    "INSTALL_HINT",
    "LOOPBACK",
    "RedisReplyError",
    "RedisServer",
    "RedisServerError",
    "Reply",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "require_redis_server",
]

LOOPBACK = "127.0.0.1"
INSTALL_HINT = (
    "install it: `sudo apt-get install redis-server` (Debian, Ubuntu), "
    "`brew install redis` (macOS), or put `redis-server` or `valkey-server` on PATH"
)

Reply: TypeAlias = bytes | int | list["Reply"] | None
"""A RESP2 reply: simple and bulk strings as bytes, integers, arrays; nil as None."""

_POLL = 0.02  # seconds between readiness checks
_BUS_OFFSET = 10000  # a cluster node's bus listens on its port + 10000
_SERVERS = ("redis-server", "valkey-server")
_CLIS = {"redis-server": "redis-cli", "valkey-server": "valkey-cli"}


class RedisServerError(RuntimeError):
    """The harness failed: no binary, a server that did not start, a cluster that did
    not converge within its bounded wait. The message says what and, when a server
    was involved, ends with the tail of its log."""


class RedisReplyError(RedisServerError):
    """The server answered a command with an error reply (`-ERR ...`, `-NOAUTH ...`)."""


def find_redis_server() -> str | None:
    """The path of `redis-server` on PATH, else of `valkey-server`, else None."""
    for name in _SERVERS:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def require_redis_server() -> str:
    """The path of `redis-server` (or `valkey-server`); `RedisServerError` naming how
    to install it when there is neither."""
    path = find_redis_server()
    if path is None:
        raise RedisServerError(f"no redis-server (nor valkey-server) on PATH; {INSTALL_HINT}")
    return path


def find_redis_cli(server: str | None = None) -> str | None:
    """The client that goes with `server` (`redis-cli` or `valkey-cli`): first beside
    it, then on PATH; None when there is none."""
    names = ["redis-cli", "valkey-cli"]
    if server is not None:
        own = _CLIS.get(Path(server).name)
        if own is not None:
            beside = Path(server).with_name(own)
            if os.access(beside, os.X_OK):
                return str(beside)
            names.remove(own)
            names.insert(0, own)
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def free_port(*, cluster: bool = False) -> int:
    """A port of 127.0.0.1 free right now (the kernel's pick for a bind to port 0).

    With `cluster=True`, one a cluster node can use: its bus port, 10000 higher, must
    exist (so the port is at most 55535) and be free too.
    """
    for _attempt in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if not cluster:
            return port
        if port + _BUS_OFFSET <= 65535 and _bindable(port + _BUS_OFFSET):
            return port
    raise RedisServerError("no port of 127.0.0.1 with a free cluster bus port (+10000)")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


# --- a minimal RESP2 client: enough for PING, AUTH, FLUSHALL, INFO, CLUSTER ... ---------


def _encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader(Protocol):
    def readline(self) -> bytes: ...

    def read(self, size: int) -> bytes: ...


def _read_reply(reader: _Reader) -> Reply:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("the server closed the connection")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(reader) for _ in range(count)]
    raise RedisServerError(f"not a RESP reply: {line[:60]!r}")


def _command(
    port: int,
    *args: str | bytes | int,
    password: str | None = None,
    timeout: float = 2.0,
) -> Reply:
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as sock,
        sock.makefile("rb") as reader,
    ):
        if password is not None:
            sock.sendall(_encode(["AUTH", password]))
            _read_reply(reader)
        sock.sendall(_encode(args))
        return _read_reply(reader)


def _text(reply: Reply) -> str:
    if not isinstance(reply, bytes):
        raise RedisServerError(f"expected a string reply, got {reply!r}")
    return reply.decode(errors="replace")


def _fields(info: str) -> dict[str, str]:
    """`INFO` / `CLUSTER INFO` text as a dict."""
    pairs = (line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def _config_value(value: str) -> str:
    """`value` as a double-quoted redis.conf string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


# --- every server still running at exit is killed ---------------------------------------

_LIVE: set[RedisServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=2.0)


class RedisServer:
    """One `redis-server` on a free port of 127.0.0.1, in its own temporary directory.

    Configuration (written to `redis.conf` in that directory, so a password is not
    on the command line): `bind 127.0.0.1`, `protected-mode yes`, `save ""`,
    `appendonly no` (nothing persists: a restart is empty), the log to `redis.log`;
    `password` sets `requirepass` (and `masterauth`, for replicas); `args` are
    appended to the command line (`["--maxmemory", "10mb"]`) and win over the file.

    The port is chosen at the first `start()` and kept: `restart()` comes back on the
    same one. `kill()` keeps the directory (and the log); `stop()` removes it.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        args: Sequence[str] = (),
        executable: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.password = password
        self.args = tuple(args)
        self._cluster = "--cluster-enabled" in self.args
        self.executable = executable
        self.startup_timeout = startup_timeout
        self._port: int | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<RedisServer 127.0.0.1:{self._port} {state}>"

    # -- addresses

    @property
    def port(self) -> int:
        """The server's port; `RedisServerError` before the first `start()`."""
        if self._port is None:
            raise RedisServerError("the server was never started: it has no port yet")
        return self._port

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`, or `redis://:PASSWORD@127.0.0.1:PORT/0`."""
        return f"redis://{self._userinfo()}{LOOPBACK}:{self.port}/0"

    def _userinfo(self) -> str:
        return "" if self.password is None else f":{quote(self.password, safe='')}@"

    @property
    def pid(self) -> int | None:
        """The process id while the process exists (running or paused), else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be paused)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def directory(self) -> Path | None:
        """The temporary directory (config, log, cluster config); None after `stop()`."""
        return self._dir

    # -- life cycle

    def start(self) -> RedisServer:
        """Start the server and return once it answers `PING` (within
        `startup_timeout`). On the first start a port of 127.0.0.1 is picked (another
        one, up to 5 times, if something took it in between); later starts reuse it.
        """
        if self.running:
            raise RedisServerError(f"{self!r} is already running")
        fixed = self._port is not None
        for _attempt in range(1 if fixed else 5):
            if not fixed:
                self._port = None  # another pick
            self._spawn()
            try:
                self.wait_ready()
                return self
            except RedisServerError:
                self._halt(signal.SIGKILL)
                if fixed or "already in use" not in self.log_tail():
                    raise
                assert self._dir is not None
                (self._dir / "redis.log").unlink(missing_ok=True)
        raise RedisServerError(f"no free port for redis-server; last log:\n{self.log_tail()}")

    def _spawn(self) -> None:
        """Launch the process without waiting for it to answer (on a port picked now
        if it has none yet)."""
        executable = self.executable or require_redis_server()
        if self._port is None:
            self._port = free_port(cluster=self._cluster)
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="predial-redis-"))
        conf = self._dir / "redis.conf"
        lines = [
            f"port {self.port}",
            f"bind {LOOPBACK}",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            "daemonize no",
            f"dir {_config_value(str(self._dir))}",
            'logfile ""',
        ]
        if self.password is not None:  # masterauth: a replica's link to its master
            lines.append(f"requirepass {_config_value(self.password)}")
            lines.append(f"masterauth {_config_value(self.password)}")
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        conf.chmod(0o600)
        with open(self._dir / "redis.log", "ab") as log:
            self._process = subprocess.Popen(
                [executable, str(conf), *self.args],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the terminal is the test runner's
            )
        self._paused = False
        _LIVE.add(self)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll with `PING` until the server answers `PONG`; `RedisServerError` with
        the log tail if the process exits or `timeout` (default `startup_timeout`)
        passes first."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        last: Exception | None = None
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RedisServerError(
                    f"redis-server on 127.0.0.1:{self._port} exited (code {code}) before "
                    f"answering PING; its log ends:\n{self.log_tail()}"
                )
            try:
                if self.command("PING", timeout=0.5) == b"PONG":
                    return
            except (OSError, RedisServerError) as error:  # refused, LOADING, ...
                last = error
            if time.monotonic() >= deadline:
                raise RedisServerError(
                    f"redis-server on 127.0.0.1:{self._port} did not answer PING within "
                    f"{self.startup_timeout if timeout is None else timeout} s (last: {last!r}); "
                    f"its log ends:\n{self.log_tail()}"
                )
            time.sleep(_POLL)

    def _halt(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        """Send `sig`, wait for the process to end (SIGKILL after `timeout`); keep the
        directory."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.send_signal(sig)
                if self._paused and sig != signal.SIGKILL:
                    process.send_signal(signal.SIGCONT)  # a stopped process handles no TERM
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            else:
                process.wait()
        self._process = None
        self._paused = False
        _LIVE.discard(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM; SIGKILL if it has not exited after `timeout`
        seconds), wait for it and remove its directory. Safe to call twice."""
        self._halt(signal.SIGTERM, timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL, as a crash: open connections drop, new ones are refused. The
        directory (log, cluster config) stays for `restart()`."""
        self._halt(signal.SIGKILL)

    def restart(self) -> RedisServer:
        """Start again on the same port (SIGTERM first if it is running) and return
        once it answers `PING`. Nothing persists: the data is gone."""
        if self._port is None:
            raise RedisServerError("restart() of a server that was never started")
        if self.running:
            self._halt(signal.SIGTERM)
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing
        (clients see timeouts, not refusals) until `resume()`."""
        process = self._require_process()
        process.send_signal(signal.SIGSTOP)
        self._paused = True
        self._wait_state(process.pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT, and return once the server answers `PING` again."""
        process = self._require_process()
        process.send_signal(signal.SIGCONT)
        self._paused = False
        self._wait_state(process.pid, stopped=False)
        self.wait_ready()

    @staticmethod
    def _wait_state(pid: int, *, stopped: bool) -> None:
        """Wait (up to 1 s; Linux only, elsewhere not at all) until the kernel reports
        the process stopped or not, so the signal has taken effect on return."""
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if (state in ("T", "t")) == stopped:
                return
            time.sleep(0.005)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise RedisServerError(f"{self!r} is not running")
        return self._process

    def flush(self) -> None:
        """`FLUSHALL`: every database emptied."""
        self.command("FLUSHALL")

    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> Reply:
        """Send one command on a fresh connection (authenticated when there is a
        password) and return the reply; `RedisReplyError` for an error reply,
        `OSError` when the server cannot be reached or does not answer in `timeout`."""
        return _command(self.port, *args, password=self.password, timeout=timeout)

    def info(self, section: str = "server") -> dict[str, str]:
        """`INFO section` as a dict."""
        return _fields(_text(self.command("INFO", section)))

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the server's output (empty when there is none)."""
        if self._dir is None:
            return ""
        try:
            text = (self._dir / "redis.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
