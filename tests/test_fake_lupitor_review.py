"""issue 13, the hostile review of `predial fake-lupitor`: a stop does not wait out
a request's injected latency, a second signal forces it, a cut request is answered
503 without a traceback, and what the user typed is echoed without its control
characters; numbers are ASCII digits."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from predial.cli._app import cli
from predial.cli._fake_lupitor_cmd import parse_faults

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

START_TIMEOUT = 30.0


class Fake:
    """`predial fake-lupitor --port 0 ARGS` as a process; its URL read from stdout."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.err = tmp_path / "fake.err"
        with self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "predial", "fake-lupitor", "--port", "0", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        self.url = ""
        while not self.url:
            assert time.monotonic() < deadline
            line = self.process.stdout.readline()
            assert line, self.stderr
            if line.startswith("export LUPITOR_API_URL="):
                self.url = line.split()[1].split("=", 1)[1]

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def slow_fake(tmp_path: Path) -> Iterator[Fake]:
    """A fake whose every request takes 30 s."""
    # The most a fault allows: a stop that waited it out would never end in a test.
    fake = Fake(tmp_path, "--faults", "latency=3600")
    yield fake
    fake.stop()


def in_flight(fake: Fake) -> tuple[threading.Thread, list[httpx.Response | BaseException]]:
    """A request sent to `fake` from a thread, arrived and waiting out its latency."""
    answers: list[httpx.Response | BaseException] = []

    def ask() -> None:
        try:
            answers.append(
                httpx.get(
                    f"{fake.url}/api/v1/leads?campaignId=cmp_1",
                    headers={"x-api-key": "sk_test_write"},
                    timeout=60,
                )
            )
        except BaseException as error:  # reported by the test, not lost in the thread
            answers.append(error)

    thread = threading.Thread(target=ask)
    thread.start()
    # Time for the request to reach the server (on 127.0.0.1, milliseconds) and be
    # held there by the 30 s latency: nothing tells from outside when it has.
    time.sleep(1.0)
    assert thread.is_alive()
    return thread, answers


def assert_cut_with_503(fake: Fake, answers: list[httpx.Response | BaseException]) -> None:
    [answer] = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 503
    assert answer.json() == {"success": False, "data": None, "error": "the fake is stopping"}
    err = fake.stderr
    assert "Traceback" not in err
    assert "Exception in ASGI application" not in err
    assert "CancelledError" not in err
    assert "timeout graceful shutdown exceeded" not in err
    assert " GET /api/v1/leads 503" in err
    assert "stopped; the leads it held (0 in cmp_1, 0 in cmp_2) are gone" in err


def test_a_stop_gives_a_request_in_flight_a_few_seconds_not_its_latency(
    slow_fake: Fake,
) -> None:
    """SIGTERM used to wait out the request's 30 s (up to the 3,600 s allowed)."""
    thread, answers = in_flight(slow_fake)
    slow_fake.process.send_signal(signal.SIGTERM)
    # A hang guard, not a measurement: the request's latency is an hour.
    assert slow_fake.process.wait(60) == 0
    thread.join(10)
    assert "a second signal" not in slow_fake.stderr
    assert_cut_with_503(slow_fake, answers)
    assert (
        "stopping: 1 request still running gets up to 3 s to finish, then the answer 503; "
        "Ctrl-C or SIGTERM again stops at once"
    ) in slow_fake.stderr.splitlines()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_it_at_once(slow_fake: Fake, stop: signal.Signals) -> None:
    """A second SIGTERM did nothing; a second Ctrl-C forced the stop with an `Exception
    in ASGI application` CancelledError traceback and a 500 to the client."""
    thread, answers = in_flight(slow_fake)
    slow_fake.process.send_signal(stop)
    time.sleep(0.3)
    slow_fake.process.send_signal(stop)
    assert slow_fake.process.wait(60) == 0
    thread.join(10)
    # Whether the wait was cut short, from the fake itself rather than a clock.
    assert "a second signal: stopped at once" in slow_fake.stderr.splitlines()
    assert_cut_with_503(slow_fake, answers)


def test_a_stop_without_requests_says_nothing_of_them(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    try:
        fake.process.send_signal(signal.SIGTERM)
        assert fake.process.wait(30) == 0
    finally:
        fake.stop()
    assert "stopping:" not in fake.stderr


# -- what the user typed, echoed ---------------------------------------------------------


def test_a_control_character_in_a_fault_is_escaped_in_the_error() -> None:
    """`error_rate=\\x1b[2J` used to reach the terminal as typed (and clear it)."""
    result = CliRunner().invoke(cli, ["fake-lupitor", "--faults", "error_rate=\x1b[2J"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --faults: error_rate='\\x1b[2J': must be a fraction of the requests from 0 "
        "to 1, e.g. error_rate=0.1"
    ]


def test_a_control_character_in_a_campaign_is_refused() -> None:
    """The campaigns are printed in the banner: one with an escape sequence is refused
    (predial import refuses it too), shown escaped."""
    result = CliRunner().invoke(cli, ["fake-lupitor", "--campaign", "k\x1b[2J"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --campaign: 'k\\x1b[2J' holds a control character; give the campaign's id as shown"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed=٣", "seed=٣: must be an integer (digits 0-9), e.g. seed=7"),
        ("seed=1_000", "seed=1_000: must be an integer (digits 0-9)"),
        ("forced_429=３", "forced_429=３: must be a whole number of requests, 0 or more"),
        ("latency=١", "latency=١: must be seconds from 0 to 3600"),
        ("error_rate=٠.٥", "error_rate=٠.٥: must be a fraction of the requests"),
        ("latency=0_5", "latency=0_5: must be seconds"),
    ],
)
def test_numbers_are_ascii_digits(text: str, message: str) -> None:
    """Python's int() and float() read other scripts' digits and underscores: the
    option takes 0-9 only."""
    with pytest.raises(ValueError, match="^--faults: ") as caught:
        parse_faults(text)
    assert str(caught.value).startswith(f"--faults: {message}")


@given(st.sampled_from(["seed", "forced_429", "latency", "error_rate"]), st.text(max_size=12))
def test_any_value_is_a_number_in_ascii_or_one_printable_error(key: str, value: str) -> None:
    """Whatever the value, it parses only when it is ASCII; an error is one line
    with no control character in it."""
    try:
        parsed = parse_faults(f"{key}={value}")
    except ValueError as error:
        message = str(error)
        assert message.isprintable(), repr(message)
        return
    assert value.strip().isascii()
    assert set(parsed) <= {key}
