"""`predial fake-lupitor`: its `--faults` parser (with hypothesis), its one-line
errors, and the command as a real process on 127.0.0.1 (URL and key printed, the
options honoured, exit 0 on SIGTERM and on Ctrl-C)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from predial.cli._app import cli
from predial.cli._fake_lupitor_cmd import FAULTS, parse_faults

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from predial.testing import Faults

START_TIMEOUT = 30.0


# -- the --faults parser ---------------------------------------------------------------


def test_faults_are_the_fields_of_the_fake() -> None:
    """--faults knows exactly the fields of predial.testing.Faults."""
    assert list(FAULTS) == [field.name for field in dataclasses.fields(Faults)]


def test_faults_parse() -> None:
    assert parse_faults("error_rate=0.1,latency=0.2,forced_429=3") == {
        "error_rate": 0.1,
        "latency": 0.2,
        "forced_429": 3,
    }
    assert parse_faults(" Forced-429 = 2 , seed=-7, ") == {"forced_429": 2, "seed": -7}
    assert parse_faults("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latncy=0.2", "unknown fault 'latncy' (did you mean latency?); the faults are"),
        ("colour=red", "unknown fault 'colour'; the faults are error_rate, latency,"),
        ("latency", "latency needs a value: write latency=0.5"),
        ("latency=", "latency needs a value"),
        ("error_rate=2", "error_rate=2: must be a fraction of the requests from 0 to 1"),
        ("error_rate=nan", "error_rate=nan: must be a fraction"),
        ("lost_after_commit_rate=-0.1", "must be a fraction"),
        ("latency=-1", "latency=-1: must be seconds from 0 to 3600"),
        ("latency=inf", "must be seconds"),
        ("forced_429=1.5", "forced_429=1.5: must be a whole number of requests, 0 or more"),
        ("forced_429=-1", "must be a whole number of requests"),
        ("seed=x", "seed=x: must be an integer (digits 0-9), e.g. seed=7"),
        ("latency=1,latency=2", "latency is given twice"),
    ],
)
def test_bad_faults_say_which_and_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^--faults: ") as caught:
        parse_faults(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


_fraction = st.floats(min_value=0.0, max_value=1.0)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "error_rate": _fraction,
            "latency": st.floats(min_value=0.0, max_value=3600.0),
            "lost_after_commit_rate": _fraction,
            "forced_429": st.integers(min_value=0, max_value=10**6),
            "seed": st.integers(min_value=-(10**9), max_value=10**9),
        },
    ),
    st.booleans(),
)
def test_faults_written_out_parse_back(faults: dict[str, float | int], spaced: bool) -> None:
    """Any faults, written as KEY=VALUE parts, parse back to the same values."""
    separator = " , " if spaced else ","
    text = separator.join(f"{key}={value!r}" for key, value in faults.items())
    assert parse_faults(text) == faults
    Faults(**faults)  # and they make a Faults


@given(st.text(alphabet=st.sampled_from("=,._- 0123456789eEaelncyrt_x+"), max_size=40))
def test_any_text_parses_or_is_one_clear_error(text: str) -> None:
    """Whatever is typed, the parser answers faults it can use or one ValueError line."""
    try:
        parsed = parse_faults(text)
    except ValueError as error:
        message = str(error)
    else:
        message = ""
    if message:
        assert message.startswith("--faults: ")
        assert "\n" not in message
        return
    assert set(parsed) <= set(FAULTS)
    for key, value in parsed.items():
        assert math.isfinite(value)
        if FAULTS[key] == "fraction":
            assert 0 <= value <= 1


# -- one-line errors through the CLI ---------------------------------------------------


def test_a_bad_fault_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(cli, ["fake-lupitor", "--faults", "latncy=0.2"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --faults: unknown fault 'latncy' (did you mean latency?); the faults are "
        "error_rate, latency, lost_after_commit_rate, forced_429, seed"
    ]


def test_without_the_server_extra_one_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["fake-lupitor"])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "pip install 'predial[server]'" in line
    assert "uvicorn is missing" in line


def test_a_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["fake-lupitor", "--port", str(port)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "--port 0 for a free one" in line


def test_an_empty_campaign_is_refused() -> None:
    result = CliRunner().invoke(cli, ["fake-lupitor", "--campaign", " "])
    assert result.exit_code == 2
    assert "--campaign: a campaign id cannot be empty" in result.stderr


# -- the command as a process ----------------------------------------------------------


class Fake:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out = tmp_path / "fake.out"
        self.err = tmp_path / "fake.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "predial", "fake-lupitor", "--port", "0", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        self.exports: dict[str, str] = {}
        while not self.exports:
            assert self.process.poll() is None, self.stderr
            assert time.monotonic() < deadline, self.stdout
            for line in self.stdout.splitlines():
                if line.startswith("export "):
                    self.exports = dict(w.split("=", 1) for w in shlex.split(line)[1:])
            time.sleep(0.05)
        self.url = self.exports["LUPITOR_API_URL"]

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def get(self, path: str, key: str = "sk_test_write") -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"x-api-key": key}, timeout=10)

    def post(self, path: str, body: object, key: str = "sk_test_write") -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"x-api-key": key}, timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def fakes() -> Iterator[list[Fake]]:
    started: list[Fake] = []
    yield started
    for fake in started:
        fake.stop()


def test_it_serves_the_fake_and_prints_what_to_export(fakes: list[Fake], tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    fakes.append(fake)
    assert fake.exports["LUPITOR_API_KEY"] == "sk_test_write"
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.url != "http://127.0.0.1:0"  # the real port, not the one asked for
    assert "campaigns: cmp_1, cmp_2" in fake.stdout
    assert "sk_test_read (read only)" in fake.stdout
    created = fake.post(
        "/api/v1/leads/bulk", {"campaignId": "cmp_1", "leads": [{"externalId": "A"}]}
    )
    assert created.status_code == 201
    listed = fake.get("/api/v1/leads?campaignId=cmp_1", key="sk_test_read").json()
    assert [lead["externalId"] for lead in listed["data"]["leads"]] == ["A"]
    fake.process.send_signal(signal.SIGTERM)
    assert fake.process.wait(30) == 0
    err = fake.stderr
    assert " POST /api/v1/leads/bulk 201" in err  # a line per request
    assert "stopped; the leads it held (1 in cmp_1, 0 in cmp_2) are gone" in err


def test_options_reach_the_fake(fakes: list[Fake], tmp_path: Path) -> None:
    """--api-version, --campaign and --faults are the fake's; Ctrl-C exits 0 too."""
    fake = Fake(
        tmp_path,
        "--api-version",
        "v1",
        "--campaign",
        "k1",
        "--campaign",
        "k2",
        "--faults",
        "forced_429=1",
        "--quiet",
    )
    fakes.append(fake)
    assert "campaigns: k1, k2" in fake.stdout
    assert "faults: forced_429=1" in fake.stdout
    assert "(v1 docs)" in fake.stdout
    assert "sk_one" not in fake.stdout  # its campaign, cmp_1, is not served
    assert fake.get("/api/v1/leads?campaignId=k1").status_code == 429  # the forced one
    # v1: bulk create needs a phone number on every lead.
    refused = fake.post("/api/v1/leads/bulk", {"campaignId": "k2", "leads": [{"externalId": "A"}]})
    assert refused.json()["error"] == "leads[0]: phoneNumber is required"
    assert fake.get("/api/v1/leads?campaignId=cmp_1").status_code == 404
    fake.process.send_signal(signal.SIGINT)
    assert fake.process.wait(30) == 0
    assert "POST" not in fake.stderr  # --quiet: no request lines
