"""`predial serve` as a real process: fail-fast startup, the README flow, the drain on
SIGTERM with requests in flight, and `--workers 2`.

Every server here is `python -m predial serve` on a free 127.0.0.1 port, in its own
process group; the fixture kills whatever is left of it (workers included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

from conftest import VALID_US
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent

STARTUP_TIMEOUT = 40.0  # a noisy 2-core box, and a cold import of the whole stack
EXIT_TIMEOUT = 30.0

# An in-house adapter loaded from a plugin file: sleeps `delay` seconds, logs
# "<pid> <external id>" per call to `calls_file` and its pid to `closed_file` when
# the resolver closes it. With a `gate_file`, it waits for that file to exist instead
# of sleeping. With `fail_in_workers`, it cannot be built in a worker of
# `--workers` (whose environment names the metrics directory) but can in the parent.
SLOW_ADAPTER = f'''
import asyncio
import os
import time

import predial


class SlowAdapter:
    name = "slow"

    def __init__(
        self,
        delay: float,
        calls_file: str,
        closed_file: str,
        gate_file: str = "",
        fail_in_workers: bool = False,
        build_seconds: float = 0.0,
        stubborn: bool = False,
    ) -> None:
        self.stubborn = stubborn
        if fail_in_workers and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise predial.ConfigurationError("no CRM session for a worker")
        if build_seconds:
            open(closed_file + ".building", "w").close()
            time.sleep(build_seconds)  # a CRM login that takes a while
        self.delay = delay
        self.gate_file = gate_file
        self.calls_file = calls_file
        self.closed_file = closed_file

    async def fetch_phone(self, external_id: str) -> str:
        with open(self.calls_file, "a") as calls:
            calls.write(f"{{os.getpid()}} {{external_id}}\\n")
        while self.stubborn:  # an adapter that swallows its cancellation
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        if self.gate_file:
            while not os.path.exists(self.gate_file):
                await asyncio.sleep(0.02)
        else:
            await asyncio.sleep(self.delay)
        return "{VALID_US}"

    async def aclose(self) -> None:
        with open(self.closed_file, "a") as closed:
            closed.write(f"{{os.getpid()}}\\n")


@predial.hookimpl
def register_adapters(register):
    register(SlowAdapter)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def refuses(port: int) -> bool:
    """Whether nothing accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Served:
    """One `predial serve` process, its output in files (no pipe can fill up)."""

    def __init__(
        self, args: list[str], port: int, cwd: Path, logs: Path, env: dict[str, str]
    ) -> None:
        self.port = port
        self.out = logs / f"serve-{port}.out"
        self.err = logs / f"serve-{port}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "predial", "serve", *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: workers die with it
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"predial serve exited {self.process.returncode}:\n{self.stderr}"
                )
            try:
                if httpx.get(self.url("/readyz"), timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"predial serve not ready after {timeout} s:\n{self.stderr}")

    def resolve(self, external_id: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(
            self.url("/v1/resolve"),
            json={"campaignId": "cmp_slow", "externalId": external_id},
            timeout=timeout,
        )

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"predial serve still running {timeout} s after SIGTERM:\n{self.stderr}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            # Its whole process group: its workers too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The server's environment: nothing inherited that could point it elsewhere, and
    its temporary files (the metrics directory of `--workers`) under tmp_path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREDIAL_", "PROMETHEUS_"))
    }
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env.update({"TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    return env


@pytest.fixture
def serve(tmp_path: Path, environment: dict[str, str]) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, port: int | None = None, cwd: Path | None = None) -> Served:
        port = free_port() if port is None else port
        served = Served([*args, "--port", str(port)], port, cwd or tmp_path, tmp_path, environment)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.kill()


class Slow:
    """A configuration serving campaign `cmp_slow` through the slow plugin adapter."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.calls = tmp_path / "calls.log"
        self.closed = tmp_path / "closed.log"
        (tmp_path / "slow_adapter.py").write_text(SLOW_ADAPTER)

    def write(
        self,
        *,
        delay: float = 1.0,
        deadline: float = 5.0,
        adapter: str = "slow",
        settings: str = "",
        service: str = "allow_unauthenticated = true",
        name: str = "predial.toml",
    ) -> Path:
        path = self.dir / name
        path.write_text(
            textwrap.dedent(
                f"""\
                [resolver]
                deadline = {deadline}
                plugins = ["slow_adapter.py"]

                [[campaigns]]
                id = "cmp_slow"
                adapter = "{adapter}"
                default_region = "US"

                [campaigns.settings]
                delay = {delay}
                calls_file = {json.dumps(str(self.calls))}
                closed_file = {json.dumps(str(self.closed))}
                {settings}

                [service]
                host = "127.0.0.1"
                """
            )
            + textwrap.dedent(service)
            + "\n"
        )
        return path

    def pids(self) -> set[int]:
        return {int(line.split()[0]) for line in lines(self.calls)}


@pytest.fixture
def slow(tmp_path: Path) -> Slow:
    return Slow(tmp_path)


# -- 1. a bad configuration fails fast: exit 2, one line, nothing listens ------------


BAD_CONFIGURATIONS = {
    "unknown adapter": ({"adapter": "no-such-adapter"}, [], "no-such-adapter"),
    "missing secret": (
        {
            "service": """
            [[service.keys]]
            name = "dialer"
            key = "${PREDIAL_TEST_UNSET_DIALER_KEY}"
            campaigns = ["*"]
            """
        },
        [],
        "PREDIAL_TEST_UNSET_DIALER_KEY",
    ),
    "anonymous off loopback": ({}, ["--host", "0.0.0.0"], "allow_unauthenticated"),
    "no credentials": ({"service": "port = 8000"}, [], "no credentials"),
    "bad --host": ({}, ["--host", "not an address"], "--host: "),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGURATIONS))
def test_a_bad_configuration_exits_2_with_one_line(
    case: str, serve: Callable[..., Served], slow: Slow
) -> None:
    overrides, args, expected = BAD_CONFIGURATIONS[case]
    config = slow.write(**overrides)
    served = serve("--config", str(config), *args)
    assert served.wait() == 2, served.stderr
    error = served.stderr.splitlines()
    assert len(error) == 1, served.stderr
    assert error[0].startswith("error: ")
    assert expected in error[0]
    assert served.stdout == ""
    assert refuses(served.port)
    assert not slow.calls.exists()


def test_every_problem_is_said_at_once_as_config_validate_says_it(
    serve: Callable[..., Served], slow: Slow, environment: dict[str, str]
) -> None:
    """An unset [service] key does not hide a broken plugin file, a misspelt setting
    or an unknown adapter: every line config validate prints, exit 2, nothing built."""
    config = slow.write(
        settings="delai = 1",
        service="""
        [[service.keys]]
        key = "${PREDIAL_TEST_UNSET_DIALER_KEY}"
        campaigns = ["*"]
        """,
    )
    text = config.read_text().replace(
        'plugins = ["slow_adapter.py"]', 'plugins = ["slow_adapter.py", "missing.py"]'
    )
    config.write_text(text + '[[campaigns]]\nid = "other"\nadapter = "no-such-adapter"\n')
    served = serve("--config", str(config))
    assert served.wait() == 2, served.stderr
    error = served.stderr.splitlines()
    assert [line.split(": ")[2] for line in error] == [
        "resolver.plugins[1]",
        "campaigns[0].settings.delai",
        "campaigns[1].adapter",
        "service.keys[0].key",
    ], served.stderr
    assert all(line.startswith(f"error: {config}: ") for line in error)
    assert "adapter 'slow' has no such setting; did you mean 'delay'?" in error[1]
    assert "unknown adapter 'no-such-adapter'" in error[2]
    assert "PREDIAL_TEST_UNSET_DIALER_KEY is not set" in error[3]
    validated = subprocess.run(
        [sys.executable, "-m", "predial", "config", "validate", str(config)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    # config validate holds [service] to the same: the same lines.
    assert (validated.returncode, validated.stderr.splitlines()) == (2, error)
    assert served.stdout == ""
    assert refuses(served.port)
    assert not slow.closed.exists()


def test_a_port_in_use_exits_2_with_one_line(serve: Callable[..., Served], slow: Slow) -> None:
    config = slow.write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = serve("--config", str(config), port=port)
        assert served.wait() == 2, served.stderr
        error = served.stderr.splitlines()
        assert len(error) == 1, served.stderr
        assert error[0].startswith("error: ")
        assert f"cannot listen on 127.0.0.1:{port}" in error[0]
        assert served.stdout == ""
    assert refuses(port)
    # The adapter it had built is closed before it exits (after the one built by the
    # startup check, as config validate builds it).
    assert len(lines(slow.closed)) == 2


# -- 2. the README flow -------------------------------------------------------------


def test_the_readme_flow_answers_ok_and_logs_the_masked_number(
    serve: Callable[..., Served],
) -> None:
    served = serve("--config", "examples/predial.toml", cwd=REPO)
    served.wait_ready()
    response = httpx.post(
        served.url("/v1/resolve"),
        json={"campaignId": "cmp_crm_export", "externalId": "C-1001"},
        timeout=30,
    )
    assert response.status_code == 200
    decision = response.json()
    assert decision["status"] == "ok"
    assert decision["phoneNumber"] == VALID_US
    served.terminate()
    assert served.wait() == 0, served.stderr
    output = served.stdout
    [line] = [line for line in output.splitlines() if "path=/v1/resolve" in line]
    assert f"decisionId={decision['decisionId']}" in line
    assert "phoneNumber=+1202***1111" in line
    assert VALID_US not in output
    assert VALID_US not in served.stderr
    assert refuses(served.port)


# -- 3. the drain on SIGTERM ----------------------------------------------------------


def test_sigterm_drains_requests_in_flight(
    serve: Callable[..., Served], slow: Slow, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    config = slow.write(deadline=20.0, settings=f"gate_file = {json.dumps(str(gate))}")
    served = serve("--config", str(config))
    served.wait_ready()
    # The startup check's adapter (built as config validate builds it) is closed.
    assert lines(slow.closed) == [str(served.process.pid)]
    count = 20
    with ThreadPoolExecutor(count) as pool:
        answers = [pool.submit(served.resolve, f"L-{index}") for index in range(count)]
        wait_for(lambda: len(lines(slow.calls)) == count, 20, "every request in the adapter")
        served.terminate()
        signalled = time.monotonic()
        # The CRM answers only once the server has stopped listening.
        wait_for(lambda: "Shutting down" in served.stderr, 10, "the server to shut down")
        wait_for(lambda: refuses(served.port), 5, "the listener to close")
        assert not any(answer.done() for answer in answers)
        gate.touch()
        responses = [answer.result() for answer in answers]
    assert [response.status_code for response in responses] == [200] * count
    decisions = [response.json() for response in responses]
    assert {decision["status"] for decision in decisions} == {"ok"}
    assert sorted(decision["externalId"] for decision in decisions) == sorted(
        f"L-{index}" for index in range(count)
    )
    assert served.wait() == 0, served.stderr
    assert time.monotonic() - signalled < 15
    assert lines(slow.closed) == [str(served.process.pid)] * 2  # the served one too
    assert refuses(served.port)
    # Every answer was logged before the exit.
    access = [line for line in served.stdout.splitlines() if "path=/v1/resolve" in line]
    assert len(access) == count
    assert all("status=200" in line for line in access)


def test_drain_delay_answers_503_before_it_stops_listening(
    serve: Callable[..., Served], slow: Slow
) -> None:
    drain_delay = 1.0
    config = slow.write(
        delay=0.5,
        service=f"""
        allow_unauthenticated = true
        drain_delay = {drain_delay}
        retry_after = 7
        """,
    )
    served = serve("--config", str(config))
    served.wait_ready()
    assert lines(slow.closed) == [str(served.process.pid)]  # the startup check's adapter
    with ThreadPoolExecutor(1) as pool:
        in_flight: Future[httpx.Response] = pool.submit(served.resolve, "L-in-flight")
        wait_for(lambda: len(lines(slow.calls)) == 1, 20, "the request in the adapter")
        served.terminate()
        signalled = time.monotonic()
        with httpx.Client(timeout=5) as client:
            ready = client.get(served.url("/readyz"))
            while ready.status_code == 200 and time.monotonic() < signalled + drain_delay:
                ready = client.get(served.url("/readyz"))
            assert ready.status_code == 503
            assert ready.json()["status"] == "draining"
            refused = client.post(
                served.url("/v1/resolve"), json={"campaignId": "cmp_slow", "externalId": "L-new"}
            )
        answered = time.monotonic()
        assert in_flight.result().status_code == 200
        assert in_flight.result().json()["status"] == "ok"
    assert answered < signalled + drain_delay, "too slow to test the drain delay"
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "7"
    assert refused.json()["error"]["code"] == "shutting_down"
    assert served.wait() == 0, served.stderr
    # It kept listening (and answering 503) for the drain delay.
    assert time.monotonic() - signalled >= drain_delay * 0.9
    assert "L-new" not in {line.split()[1] for line in lines(slow.calls)}
    assert lines(slow.closed) == [str(served.process.pid)] * 2  # the served one too
    assert refuses(served.port)


# -- 4. --workers 2 -----------------------------------------------------------------


def resolves_total(served: Served) -> float:
    text = httpx.get(served.url("/metrics"), timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "predial_resolves_total"
    )


def test_two_workers_answer_and_stop_on_sigterm(
    serve: Callable[..., Served], slow: Slow, environment: dict[str, str]
) -> None:
    scratch = Path(environment["TMPDIR"])
    served = serve("--config", str(slow.write(delay=0.5)), "--workers", "2", "--access-log", "json")
    served.wait_ready()
    [metrics_dir] = list(scratch.glob("predial-metrics-*"))
    made = 0
    responses: list[httpx.Response] = []
    with ThreadPoolExecutor(8) as pool:
        # Both workers accept on one socket: waves of concurrent requests until the
        # calls came from two processes.
        for wave in range(15):
            responses += pool.map(served.resolve, [f"W{wave}-{n}" for n in range(8)])
            made += 8
            if len(slow.pids()) >= 2:
                break
    assert [response.status_code for response in responses] == [200] * made
    assert {response.json()["status"] for response in responses} == {"ok"}
    workers = slow.pids()
    assert len(workers) == 2
    assert served.process.pid not in workers
    # /metrics answers for all the workers, whichever one serves it.
    assert resolves_total(served) == made
    # SIGTERM with requests in flight: the workers drain, none is dropped.
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(served.resolve, f"F-{n}") for n in range(8)]
        wait_for(
            lambda: sum(" F-" in line for line in lines(slow.calls)) == 8,
            20,
            "every request in an adapter",
        )
        served.terminate()
        late = [answer.result() for answer in answers]
    assert [response.status_code for response in late] == [200] * 8
    assert {response.json()["status"] for response in late} == {"ok"}
    assert served.wait() == 0, served.stderr
    # The workers log as the command line says: JSON, the number masked.
    access = [json.loads(line) for line in served.stdout.splitlines()]
    resolves = [line for line in access if line["path"] == "/v1/resolve"]
    assert len(resolves) == made + 8
    assert {line["phoneNumber"] for line in resolves} == {"+1202***1111"}
    assert not metrics_dir.exists()
    assert refuses(served.port)
    # The parent closed the adapters it built to check the configuration, and each
    # worker closed its own.
    closed = {int(pid) for pid in lines(slow.closed)}
    assert closed == workers | {served.process.pid}


def test_a_worker_that_cannot_start_stops_the_service(
    serve: Callable[..., Served], slow: Slow, environment: dict[str, str]
) -> None:
    config = slow.write(settings="fail_in_workers = true")
    served = serve("--config", str(config), "--workers", "2")
    # Exit 2, not a supervisor restarting workers that fail the same way forever.
    assert served.wait(STARTUP_TIMEOUT) == 2, served.stderr
    stderr = served.stderr
    assert stderr.splitlines()[-1] == "error: a worker could not start (its error is logged above)"
    assert 1 <= stderr.count("cannot start: ") <= 2, stderr
    assert "campaigns[0].settings: adapter 'slow' rejected its settings" in stderr
    assert "Traceback" not in stderr
    assert not list(Path(environment["TMPDIR"]).glob("predial-metrics-*"))
    assert refuses(served.port)


def test_sigterm_while_the_adapters_are_built_exits_0(
    serve: Callable[..., Served], slow: Slow
) -> None:
    """Before uvicorn takes the signals, a SIGTERM (a deploy that changed its mind)
    still ends the process cleanly, not by the signal's default action (exit 143)."""
    config = slow.write(settings="build_seconds = 30")
    served = serve("--config", str(config))
    building = Path(str(slow.closed) + ".building")
    wait_for(building.exists, STARTUP_TIMEOUT, "the adapter is being built")
    served.terminate()
    assert served.wait() == 0, served.stderr
    assert "stopped by SIGTERM before serving" in served.stderr
    assert refuses(served.port)


def test_sigterm_exits_0_even_past_an_adapter_that_ignores_cancellation(
    serve: Callable[..., Served], slow: Slow
) -> None:
    """The lead is answered (retry_later) at its deadline; the fetch goes on. At exit
    it is cancelled, ignores that, and is left: asyncio.run would wait for it forever."""
    config = slow.write(settings="stubborn = true", deadline=0.5)
    served = serve("--config", str(config))
    served.wait_ready()
    answer = served.resolve("C-1").json()
    assert (answer["status"], answer["reason"]) == ("retry_later", "timeout")
    served.terminate()
    assert served.wait() == 0, served.stderr
    assert "ignored their cancellation" in served.stderr
