"""`predial serve` beside a bare Starlette app on the same uvicorn, in one run.

    python benchmarks/service.py            # full run (~2 min)
    python benchmarks/service.py --quick    # a ~30 s smoke run

Every server runs in a process of its own, all started at the outset and idle while
another is measured; the load client is one more process. Runs are interleaved
round by round (A, B, C, …, then …, C, B, A) and each figure is the median over
the rounds, so a slow moment of a noisy machine does not land on one side only.

- **bare**: a Starlette app whose one route reads the body and answers the service's
  own decision JSON (a cache hit's, captured from it at start), on uvicorn with the
  settings `predial serve` itself builds (`predial.service._server._uvicorn_config`:
  same HTTP implementation, event loop, `log_config=None`, no uvicorn access log, no
  server header, lifespan on, one worker);
- **serve**: the real command, `python -m predial serve --config <temp> --port N`,
  with its default text access log (to /dev/null), again with `--access-log off`, and
  with `--workers 2`. It authenticates with an API key (`Authorization: Bearer`), as a
  production dialer would. `--serve-command` starts something else in its place
  (a patched build, `env VAR=… python -m predial serve`);
- **canned**: a raw asyncio server answering the same bytes: what the load client
  itself can do (its ceiling), since on two cores it may be the limit.

The temporary `predial.toml` loads its adapters from this file (`resolver.plugins`):
campaign `hit` answers at once, and is warmed first so every timed lookup is a
cache hit; campaign `crm50` is the local fake CRM, an adapter that awaits
`asyncio.sleep(0.05)` and returns a distinct number per id, inside the server
process. That is chosen over an HTTP fake on 127.0.0.1 because a third busy process
would share the two cores with the server and the client; the HTTP adapter's own
cost is what `benchmarks/http_adapter.py` measures. Every miss request carries a
new `externalId`, and each answer is checked to say `"source":"crm"` (the `answers`
column shows what came back).

The load client speaks HTTP/1.1 on plain asyncio protocols: `in_flight` keep-alive
connections, one request outstanding on each, the next sent as soon as the answer
is in (closed loop). httpx is not used: on this 2-CPU machine one `AsyncClient`
with 50 connections did under 100 requests/s (its pool's collapse, see
`benchmarks/http_adapter.py`) and 25 clients of 2 connections about 1,200/s, against
16,000-20,000/s for this client on the same canned server.

Columns: `server CPU` is the server's busy fraction over the timed window (its
workers included; 100% = one core) and `µs/answer` its CPU time per answer, a
steadier figure than requests/s when the machine's speed drifts.

Targets (issue 11): serve >= 0.7 of bare's requests/s on cache hits; misses at 200
in flight >= 0.8 of the ideal 200 / 0.05 s = 4,000/s (capped by the client's
ceiling). Also shown: the latency the service adds over an in-process
`await resolver.resolve(lead)` at the same number in flight, and `--workers 2` vs 1
(on a 2-CPU machine the load client takes one of the two).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import predial

LATENCY = 0.05
KEY = "bench-key-0123456789abcdef"
HIT_LEADS = 256  # distinct cache-hit leads, cycled
HERE = Path(__file__).resolve()


# -- the adapters of the temporary predial.toml (this file is its plugin) ----------


def number_for(external_id: str) -> str:
    """A distinct valid US number per numeric id (8 million of them), so a miss pays a
    real parse rather than a memoised one."""
    n = int(external_id) if external_id.isdigit() else 0
    return f"+1202{200 + n // 10_000 % 800:03d}{n % 10_000:04d}"


class InstantCrm:
    name = "bench-instant"

    async def fetch_phone(self, external_id: str) -> str:
        return number_for(external_id)


class FiftyMsCrm:
    """The local fake CRM: every contact exists and answers after 50 ms."""

    name = "bench-50ms"

    def __init__(self, latency: float = LATENCY) -> None:
        self.latency = latency

    async def fetch_phone(self, external_id: str) -> str:
        await asyncio.sleep(self.latency)
        return number_for(external_id)


@predial.hookimpl
def register_adapters(register: predial.AdapterRegister) -> None:
    register(InstantCrm)
    register(FiftyMsCrm)


CONFIG = """\
[resolver]
deadline = 5.0
plugins = [{plugin}]

[resolver.cache]
maxsize = 2000000

[[campaigns]]
id = "hit"
adapter = "bench-instant"

[[campaigns]]
id = "crm50"
adapter = "bench-50ms"

[service]
host = "127.0.0.1"

[[service.keys]]
name = "bench"
key = "${{PREDIAL_BENCH_KEY}}"
campaigns = ["*"]
"""


def request_bytes(campaign: str, external_id: str) -> bytes:
    body = f'{{"campaignId":"{campaign}","externalId":"{external_id}"}}'.encode()
    return (
        b"POST /v1/resolve HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"authorization: Bearer " + KEY.encode() + b"\r\n"
        b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


# -- the load client (a process of its own) -----------------------------------------


class Load:
    """One closed-loop run: `in_flight` connections, one request outstanding on each."""

    def __init__(
        self,
        in_flight: int,
        next_request: Callable[[], bytes],
        warmup: float,
        duration: float,
        server_pid: int,
    ) -> None:
        self.in_flight = in_flight
        self.server_pid = server_pid
        self.next_request = next_request
        self.warmup = warmup
        self.duration = duration
        self.measuring = False
        self.stopping = False
        self.latencies: list[float] = []
        self.bodies: dict[bytes, int] = {}
        self.errors = 0
        self.idle = 0
        self.window = (0.0, 0.0)
        self.finished: asyncio.Future[None] | None = None

    def done(self, conn: Connection, status: int, body: bytes, elapsed: float) -> None:
        if self.measuring:
            self.latencies.append(elapsed)
            if status != 200:
                self.errors += 1
            # What each answer was: a hit, a miss, or something else.
            if b'"source":"cache"' in body:
                kind = b"cache"
            elif b'"source":"crm"' in body:
                kind = b"crm"
            else:
                kind = body[:80]
            self.bodies[kind] = self.bodies.get(kind, 0) + 1
        if self.stopping:
            self.idle += 1
            if self.idle == self.in_flight and self.finished and not self.finished.done():
                self.finished.set_result(None)
        else:
            conn.send()

    def start_measuring(self) -> None:
        self.measuring = True
        self.cpu = time.process_time()
        self.server_ticks = cpu_ticks(self.server_pid)
        self.window = (time.perf_counter(), 0.0)

    def stop(self) -> None:
        self.measuring = False
        self.stopping = True
        self.cpu = time.process_time() - self.cpu
        self.server_ticks = cpu_ticks(self.server_pid) - self.server_ticks
        self.window = (self.window[0], time.perf_counter())


class Connection(asyncio.Protocol):
    def __init__(self, load: Load) -> None:
        self.load = load
        self.buffer = b""
        self.started = 0.0
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self) -> None:
        assert self.transport is not None
        self.started = time.perf_counter()
        self.transport.write(self.load.next_request())

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        head = buffer[:end].lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        length = int(head[at + 15 : head.find(b"\r\n", at)])
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return
        self.buffer = b""
        elapsed = time.perf_counter() - self.started
        self.load.done(self, int(head[9:12]), buffer[end + 4 : end + 4 + length], elapsed)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def run_load(job: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if job["campaign"] == "hit":
        requests = [request_bytes("hit", str(i)) for i in range(HIT_LEADS)]
        cycle = iter(range(10**12))

        def next_request() -> bytes:
            return requests[next(cycle) % HIT_LEADS]

    else:
        fresh = iter(range(job["offset"], 10**12))

        def next_request() -> bytes:
            return request_bytes(job["campaign"], str(next(fresh)))

    load = Load(job["in_flight"], next_request, job["warmup"], job["duration"], job["pid"])
    conns = []
    for _ in range(job["in_flight"]):
        _, conn = await loop.create_connection(lambda: Connection(load), "127.0.0.1", job["port"])
        conns.append(conn)
    load.finished = loop.create_future()
    for conn in conns:
        conn.send()
    await asyncio.sleep(job["warmup"])
    load.start_measuring()
    await asyncio.sleep(job["duration"])
    load.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(load.finished), timeout=10)
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    await asyncio.wait([conn.lost for conn in conns], timeout=5)
    ordered = sorted(load.latencies)
    start, end = load.window
    server_cpu = load.server_ticks / os.sysconf("SC_CLK_TCK")
    return {
        "rps": len(ordered) / (end - start),
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "n": len(ordered),
        "errors": load.errors,
        "kinds": {k.decode(errors="replace"): v for k, v in load.bodies.items()},
        "client_cpu": load.cpu / (end - start),
        # The server's CPU over the window: a busy fraction, and per answer (more
        # stable than requests/s when the machine's speed drifts).
        "server_cpu": server_cpu / (end - start),
        "server_us": server_cpu / max(1, len(ordered)) * 1e6,
    }


def client_main(conn: Any) -> None:
    """The load client's process: run each job it is sent, answer its figures."""
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(asyncio.run(run_load(job)))


# -- the servers ---------------------------------------------------------------------


def serve_bare(port: int, answer: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from predial.service._server import _uvicorn_config
    from predial.service._settings import ServiceConfig

    decision = json.loads(answer)

    async def resolve(request: Request) -> JSONResponse:
        body = await request.body()
        if b'"crm50"' in body:  # the miss load: the same 50 ms wait, nothing else
            await asyncio.sleep(LATENCY)
        return JSONResponse(decision)

    app = Starlette(routes=[Route("/v1/resolve", resolve, methods=["POST"])])
    settings = ServiceConfig(port=port, allow_unauthenticated=True)
    uvicorn.Server(_uvicorn_config(app, settings, 5.0)).run()


def serve_canned(port: int, answer: str) -> None:
    """Answers every request with fixed bytes: the load client's ceiling."""
    body = answer.encode()
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\ncontent-type: application/json\r\n\r\n"
        + body
    )

    class Canned(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buffer[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
                if len(buffer) < end + 4 + length:
                    break
                buffer = buffer[end + 4 + length :]
                self.transport.write(response)
            self.buffer = buffer

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            Canned, "127.0.0.1", port, backlog=4096
        )
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, campaign: str, external_id: str) -> tuple[int, bytes]:
    """One request over a fresh connection (setup and checks only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request_bytes(campaign, external_id).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def wait_ready(name: str, proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on port {port} within {timeout:.0f} s")


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks of `pid` and its children (e.g. uvicorn's workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, IndexError, ValueError):
        return 0
    return ticks + sum(cpu_ticks(int(child)) for child in children)


# -- the in-process reference ----------------------------------------------------------


async def in_process(config_path: Path, in_flight: int, duration: float) -> dict[str, float]:
    """`await resolver.resolve(lead)` on the same configuration, cache hits, with
    `in_flight` tasks taking turns; each call timed alone."""
    from predial._config import load_config
    from predial.service._app import resolver_from_config

    resolver = resolver_from_config(
        load_config(config_path, {**os.environ, "PREDIAL_BENCH_KEY": KEY})
    )
    leads = [predial.Lead(campaign_id="hit", external_id=str(i)) for i in range(HIT_LEADS)]
    latencies: list[float] = []
    async with resolver:
        for lead in leads:
            await resolver.resolve(lead)
        stop = time.perf_counter() + duration

        async def worker(index: int) -> None:
            while time.perf_counter() < stop:
                lead = leads[index % HIT_LEADS]
                index += in_flight
                started = time.perf_counter()
                result = await resolver.resolve(lead)
                latencies.append(time.perf_counter() - started)
                assert result.source == "cache", result
                await asyncio.sleep(0)  # let the other tasks take their turn

        await asyncio.gather(*(worker(i) for i in range(in_flight)))
    ordered = sorted(latencies)
    return {"p50": percentile(ordered, 0.5), "p99": percentile(ordered, 0.99)}


# -- the run ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 2)")
    parser.add_argument("--duration", type=float, help="seconds measured per run")
    parser.add_argument("--hit-in-flight", type=int, default=50, help="cache-hit load")
    parser.add_argument("--miss-in-flight", type=int, default=200, help="miss load")
    parser.add_argument(
        "--serve-command",
        default=shlex.join([sys.executable, "-m", "predial", "serve"]),
        help="how to start the service (default: %(default)s), e.g. a patched build's",
    )
    parser.add_argument("--bare", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--canned", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare(int(args.bare[0]), args.bare[1])
        return
    if args.canned:
        serve_canned(int(args.canned[0]), args.canned[1])
        return

    rounds = args.rounds or (2 if args.quick else 3)
    duration = args.duration or (0.7 if args.quick else 3.0)
    warmup = 0.25 if args.quick else 0.5
    hit_n, miss_n = args.hit_in_flight, args.miss_in_flight

    import starlette
    import uvicorn
    from uvicorn.config import HTTP_PROTOCOLS

    from predial.service._settings import ServiceConfig

    # What every server here runs on: predial serve's own setting, and uvicorn's
    # "auto" loop (uvloop when it is installed).
    http = ServiceConfig().http
    loop_name = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert http in HTTP_PROTOCOLS

    print(
        f"predial {predial.__version__} service benchmark ({'quick' if args.quick else 'full'}): "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, uvicorn {uvicorn.__version__} "
        f"(http {http}, loop {loop_name}), starlette {starlette.__version__}"
    )
    print(f"repeat: {shlex.join([Path(sys.executable).name, *sys.argv])}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="predial-bench-"))
    config_path = workdir / "predial.toml"
    config_path.write_text(CONFIG.format(plugin=json.dumps(str(HERE))))
    env = {**os.environ, "PREDIAL_BENCH_KEY": KEY}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}

    def start(name: str, command: list[str]) -> None:
        ports[name] = free_port()
        with (workdir / f"{name}.err").open("wb") as stderr:
            procs[name] = subprocess.Popen(
                [part.replace("{port}", str(ports[name])) for part in command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    serve = [*shlex.split(args.serve_command), "--config", str(config_path)]
    serve += ["--port", "{port}"]
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    client = ctx.Process(target=client_main, args=(there,), daemon=True)
    try:
        start("serve", serve)
        start("serve-nolog", [*serve, "--access-log", "off"])
        start("serve-w2", [*serve, "--workers", "2"])
        client.start()
        for name in list(procs):
            wait_ready(name, procs[name], ports[name])
        post(ports["serve"], "hit", "0")
        status, answer = post(ports["serve"], "hit", "0")  # a cache hit's answer
        if status != 200 or json.loads(answer)["source"] != "cache":
            raise SystemExit(f"predial serve answered {status}: {answer!r}")
        start("bare", [sys.executable, str(HERE), "--bare", "{port}", answer.decode()])
        start("canned", [sys.executable, str(HERE), "--canned", "{port}", answer.decode()])
        for name in ("bare", "canned"):
            wait_ready(name, procs[name], ports[name])
        # Warm the caches: every hit lead once on the single-worker services (the
        # two workers of serve-w2 warm up in each run's unmeasured first moments).
        for name in ("serve", "serve-nolog", "serve-w2"):
            for i in range(HIT_LEADS):
                status, answer = post(ports[name], "hit", str(i))
                assert status == 200, answer

        runs: list[tuple[str, str, str, int]] = [
            ("ceiling", "load client ceiling (canned answer)", "canned", hit_n),
            ("bare", "bare Starlette, same uvicorn", "bare", hit_n),
            ("serve", "predial serve (access log text)", "serve", hit_n),
            ("nolog", "predial serve --access-log off", "serve-nolog", hit_n),
            ("w2", "predial serve --workers 2", "serve-w2", hit_n),
            ("bare1", "bare Starlette, same uvicorn", "bare", 1),
            ("serve1", "predial serve (access log text)", "serve", 1),
            ("ceiling-m", "load client ceiling (canned answer)", "canned", miss_n),
            ("bare-m", "bare Starlette + 50 ms sleep", "bare", miss_n),
            ("miss", "predial serve, misses", "serve", miss_n),
            ("miss-w2", "predial serve --workers 2, misses", "serve-w2", miss_n),
        ]
        results: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in runs}
        local: dict[int, list[dict[str, float]]] = {hit_n: [], 1: []}
        offset = 0
        for round_ in range(rounds):
            order = runs if round_ % 2 == 0 else runs[::-1]
            for key, _, server, in_flight in order:
                miss = key.startswith("miss") or key == "bare-m"
                offset += 10_000_000
                job = {
                    "port": ports[server],
                    "in_flight": in_flight,
                    "campaign": "crm50" if miss else "hit",
                    "offset": offset,
                    "pid": procs[server].pid,
                    "warmup": warmup,
                    "duration": duration if in_flight > 1 else duration / 2,
                }
                here.send(job)
                results[key].append(here.recv())
            for in_flight in local:
                local[in_flight].append(asyncio.run(in_process(config_path, in_flight, 1.0)))
        report(results, runs, local, hit_n, miss_n, rounds, duration)
    finally:
        if client.is_alive():
            here.send(None)
            client.join(timeout=10)
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log = (workdir / f"{name}.err").read_text(errors="replace").splitlines()
            errors = [line for line in log if " ERROR " in line or "Traceback" in line]
            if errors:
                print(f"{name} logged errors, e.g.: {errors[0]}", file=sys.stderr)
        for file in workdir.iterdir():
            file.unlink()
        workdir.rmdir()


def report(
    results: dict[str, list[dict[str, Any]]],
    runs: list[tuple[str, str, str, int]],
    local: dict[int, list[dict[str, float]]],
    hit_n: int,
    miss_n: int,
    rounds: int,
    duration: float,
) -> None:
    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    print(
        f"load client: own process, asyncio protocols, HTTP/1.1 keep-alive, closed loop; "
        f"{rounds} interleaved rounds of {duration:g} s per run; medians\n"
    )
    print(
        f"{'run':<37} {'in flight':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'client CPU':>10} {'server CPU':>10} {'µs/answer':>9}  answers"
    )
    for key, label, _, in_flight in runs:
        kinds: dict[str, int] = {}
        errors = 0
        for result in results[key]:
            errors += result["errors"]
            for kind, count in result["kinds"].items():
                kinds[kind] = kinds.get(kind, 0) + count
        total = sum(kinds.values()) or 1
        if key.startswith("ceiling"):
            answers = "canned"
        else:
            answers = ", ".join(f"{v / total:.0%} {k}" for k, v in sorted(kinds.items()))
            answers += f"; {errors} non-200" if errors else ""
        print(
            f"{label:<37} {in_flight:>9} {med(key, 'rps'):>8.0f} {med(key, 'p50') * 1e3:>7.2f} "
            f"{med(key, 'p99') * 1e3:>7.2f} {med(key, 'client_cpu'):>10.0%} "
            f"{med(key, 'server_cpu'):>10.0%} {med(key, 'server_us'):>9.0f}  {answers}"
        )
    for in_flight, samples in local.items():
        p50 = statistics.median(s["p50"] for s in samples)
        p99 = statistics.median(s["p99"] for s in samples)
        print(
            f"{'in-process await resolver.resolve()':<37} {in_flight:>9} {'':>8} "
            f"{p50 * 1e3:>7.3f} {p99 * 1e3:>7.3f}"
        )

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    ratio = med("serve", "rps") / med("bare", "rps")
    quiet = med("nolog", "rps") / med("bare", "rps")
    print(
        f"\na) cache hits, {hit_n} in flight: serve/bare {ratio:.2f} (target >= 0.7) "
        f"{verdict(ratio >= 0.7)}; with --access-log off {quiet:.2f}"
    )
    print(
        f"   server CPU per answer: bare {med('bare', 'server_us'):.0f} µs, serve "
        f"{med('serve', 'server_us'):.0f} µs, --access-log off {med('nolog', 'server_us'):.0f} µs "
        f"(bare/serve {med('bare', 'server_us') / med('serve', 'server_us'):.2f})"
    )
    for in_flight, serve_key, bare_key in ((hit_n, "serve", "bare"), (1, "serve1", "bare1")):
        inproc = local[in_flight]
        line = []
        for field in ("p50", "p99"):
            base = statistics.median(s[field] for s in inproc)
            added = med(serve_key, field) - base
            floor = med(bare_key, field) - base
            line.append(f"{field} +{added * 1e3:.2f} ms (bare Starlette: +{floor * 1e3:.2f})")
        print(f"b) added over in-process resolve, {in_flight} in flight: " + ", ".join(line))
    if med("serve1", "p50") > 0.02:
        print(
            "   note: ~40 ms per answer with one request in flight is the signature of Nagle's "
            "algorithm meeting delayed ACKs: TCP_NODELAY is not set on the service's sockets"
        )
    ideal = miss_n / LATENCY
    ceiling = med("ceiling-m", "rps")
    capped = min(ideal, ceiling)
    fraction = med("miss", "rps") / capped
    print(
        f"c) misses, 50 ms CRM, {miss_n} in flight: {med('miss', 'rps'):.0f}/s of ideal "
        f"{capped:.0f}/s ({miss_n} / {LATENCY} s; client ceiling {ceiling:.0f}/s) = "
        f"{fraction:.2f} (target >= 0.8) {verdict(fraction >= 0.8)}"
    )
    bare_m = med("bare-m", "rps")
    print(
        f"   the same load on bare Starlette answering after a 50 ms sleep: {bare_m:.0f}/s = "
        f"{bare_m / capped:.2f} of ideal (the HTTP stack's own ceiling on this machine); "
        f"predial serve reaches {med('miss', 'rps') / bare_m:.2f} of it"
    )
    # With every CRM answer taking the same 50 ms, the closed loop keeps the requests
    # bunched: a burst of N arrives together and waits, on average, half of the N * c
    # seconds of CPU it needs (c = CPU per answer), so rate ~ N / (L + N * c / 2).
    cost = med("miss", "server_us") / 1e6
    budget = 2 * (LATENCY / 0.8 - LATENCY) / miss_n
    print(
        f"   {cost * 1e6:.0f} µs of server CPU per miss answer; a closed loop on a constant "
        f"{LATENCY * 1000:.0f} ms bunches requests, so expect ~N / (L + N*c/2) = "
        f"{miss_n / (LATENCY + miss_n * cost / 2):.0f}/s; 0.8 of ideal needs c <= "
        f"{budget * 1e6:.0f} µs per answer on one worker"
    )
    print(
        f"d) --workers 2 / 1: cache hits {med('w2', 'rps') / med('serve', 'rps'):.2f}, "
        f"misses {med('miss-w2', 'rps') / med('miss', 'rps'):.2f} "
        f"({os.cpu_count()} CPUs, one of them busy with the load client)"
    )


if __name__ == "__main__":
    main()
