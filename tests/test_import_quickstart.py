"""The README's import quickstart, end to end, as written: `predial fake-lupitor` in
the background, `predial import` of the messy example file (a byte-order mark,
blank rows, duplicates, phone numbers in mixed formats, bad rows), killed with
SIGKILL once some batches are in, the same command again, then the report, the
rejects file and the server's leads.

The commands are read from the README itself (the blocks after
`<!-- quickstart:import-fake -->` and `<!-- quickstart:import -->`), so the test
and the docs cannot drift apart; the only change is `--port 0` for the fake (the
default port may be taken on a test machine). Each process is `python -m predial`,
its output in files (no pipe can fill up), in its own process group.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from predial.lupitor import LupitorClient

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START_TIMEOUT = 30.0  # a cold import of the whole stack on a busy 2-core machine

#: The example file's leads, as the server must hold them: each exactly once.
EXPECTED = {
    ("C-1001", None),
    ("C-1002", None),
    (None, "+12024561111"),
    ("C-1003", "+447911123456"),
    ("C-1004", None),
    (None, "+12024561414"),
    ("C-1005", "+4915123456789"),
    ("C-1006", None),
    ("C-1007", "+33123456789"),
    ("C-1009", None),
    ("C-1010", "+31612345678"),
    ("C-1012", "+61412345678"),
    ("C-1013", "+12127363100"),
    ("C-1014", None),
    ("C-1015", "+13127445000"),
    ("C-1016", None),
}


def readme_block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```bash\n(.*?)\n```", text, re.S)
    assert match is not None, f"README.md has no bash block after <!-- {marker} -->"
    return match.group(1)


def readme_command(marker: str, program: str) -> list[str]:
    """The one line of the block that runs `predial PROGRAM`, as arguments."""
    lines = [
        line for line in readme_block(marker).splitlines() if line.startswith(f"predial {program}")
    ]
    assert len(lines) == 1, f"one `predial {program}` line expected after {marker}: {lines}"
    words = shlex.split(lines[0], comments=True)
    return [sys.executable, "-m", "predial", *words[1:]]


class Process:
    """A background `python -m predial ...`, stdout and stderr in files."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.out = cwd / f"{name}.out"
        self.err = cwd / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder laid out like the repository for the README's relative paths."""
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "import-leads.csv", tmp_path / "examples")
    return tmp_path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("LUPITOR_")
    }
    # Import locks in the test's folder, not the machine's temporary folder.
    environment["TMPDIR"] = str(tmp_path)
    return environment


@pytest.fixture
def fake(folder: Path, env: dict[str, str]) -> Iterator[tuple[Process, dict[str, str]]]:
    """The README's `predial fake-lupitor`, started as written plus `--port 0`; its
    printed `export` line parsed into variables."""
    process = Process(
        [*readme_command("quickstart:import-fake", "fake-lupitor"), "--port", "0"],
        folder,
        env,
        "fake",
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        exports: dict[str, str] = {}
        while not exports:
            assert process.process.poll() is None, f"the fake exited:\n{process.stderr}"
            assert time.monotonic() < deadline, f"no export line:\n{process.stdout}"
            for line in process.stdout.splitlines():
                if line.startswith("export "):
                    exports = dict(word.split("=", 1) for word in shlex.split(line)[1:])
            time.sleep(0.05)
        yield process, exports
    finally:
        process.stop()


def lead_count(url: str) -> int:
    # The read-only key: its own rate-limit windows, none taken from the import.
    with LupitorClient("sk_test_read", base_url=url) as client:
        return sum(1 for _ in client.list_leads("cmp_1"))


def test_the_import_quickstart_as_written(
    fake: tuple[Process, dict[str, str]], folder: Path, env: dict[str, str]
) -> None:
    server, exports = fake
    assert set(exports) == {"LUPITOR_API_URL", "LUPITOR_API_KEY"}
    url = exports["LUPITOR_API_URL"]
    assert url.startswith("http://127.0.0.1:")
    command = readme_command("quickstart:import", "import")
    env = {**env, **exports}

    # The first run, killed once two batches (of the README's --batch-size 2) are in.
    first = Process(command, folder, env, "first")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while (held := lead_count(url)) < 4:
            assert first.process.poll() is None, f"the import ended early:\n{first.stderr}"
            assert time.monotonic() < deadline, "no batch reached the fake"
            time.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        first.stop()
    assert held < len(EXPECTED), "the kill came after the import's end: not a resume"
    assert "import:" not in first.stdout  # killed: no report
    journal = folder / "examples" / "import-leads.csv.journal.sqlite"
    assert journal.exists()

    # The same command again: it resumes from the journal and ends the import.
    second = Process(command, folder, env, "second")
    try:
        assert second.wait() == 0, second.stderr
    finally:
        second.stop()
    report = second.stdout
    assert report.startswith("import, resumed from its journal: 20 rows in ")
    for line in (
        "  created                          16",
        "  skipped: duplicate in the file   2",
        "  skipped: already in the campaign 0",
        "  skipped: blank rows              2",
        "  rejected                         2",
        "           1  Phone: too few digits for its country",
        "           1  Priority: must be a whole number from 0 to 100",
        "  failed to send                   0",
        "  rejects: rejects.csv",
    ):
        assert line in report.splitlines(), report
    # The README shows this report: every line of it but the timing and the
    # request count (which depend on where the kill fell) is what the run printed.
    shown = readme_block_text("quickstart:import-report")
    for line in shown.splitlines()[1:]:
        if not line.startswith("  requests:"):
            assert line in report.splitlines(), f"README line not printed: {line!r}\n{report}"
    # Not a terminal: the progress is a line, in rows, starting where the kill left.
    progress = [line for line in second.stderr.splitlines() if line.startswith("importing:")]
    assert progress, second.stderr
    assert re.match(r"importing: (\d+)/20 rows settled", progress[0])
    assert "settled by an earlier run" in progress[0]
    assert "bytes" not in second.stderr

    # The rejects file: the two bad rows, their reasons, Excel's byte-order mark kept.
    raw = (folder / "rejects.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(row["line"], row["status"], row["column"], row["CRM ID"]) for row in rows] == [
        ("15", "rejected", "Phone", "C-1008"),
        ("18", "rejected", "Priority", "C-1011"),
    ]
    assert "too few digits" in rows[0]["reason"]
    assert rows[1]["reason"] == "must be a whole number from 0 to 100"
    assert rows[1]["Priority"] == "high"

    # The server: every lead exactly once, none lost, none doubled.
    with LupitorClient("sk_test_read", base_url=url) as client:
        stored = list(client.list_leads("cmp_1"))
    pairs = [(lead.external_id, lead.phone_number) for lead in stored]
    assert len(pairs) == len(set(pairs)) == len(EXPECTED)
    assert set(pairs) == EXPECTED
    names = {lead.external_id: (lead.metadata or {}).get("Last name") for lead in stored}
    assert names["C-1009"] == "Müller"  # read as UTF-8: the mark was understood

    # The fake stops on SIGTERM with exit 0, saying what it held.
    server.process.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0, server.stderr
    assert "stopped; the leads it held (16 in cmp_1" in server.stderr


def readme_block_text(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*```text\n(.*?)\n```", text, re.S)
    assert match is not None, f"README.md has no text block after <!-- {marker} -->"
    return match.group(1)
