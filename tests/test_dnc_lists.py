"""A directory of lists: the gate's first_hit, reloads within a second, the
internal list's history, a reader never broken by a writer replacing the file."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from predial.compliance import DncList, DncLists, _dnc_lists
from predial.errors import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_hit_names_the_first_list_holding_the_number(tmp_path: Path) -> None:
    DncList(tmp_path, "internal").add(["+12025550123"], by="test")
    DncList(tmp_path, "national").add(["+12025550123", "+13035550100"], by="test")
    lists = DncLists(tmp_path)
    assert lists.first_hit("+12025550123", ["internal", "national"]) == "internal"
    assert lists.first_hit("+12025550123", ["national", "internal"]) == "national"
    assert lists.first_hit("+13035550100", ["internal", "national"]) == "national"
    assert lists.first_hit("+13035550101", ["internal", "national"]) is None
    for other in ("+442079460000", "+1202555012", "", "tel:+12025550123"):
        assert lists.first_hit(other, ["internal"]) is None
    assert lists.hits("+12025550123") == ["internal", "national"]


def test_a_missing_list_names_itself_the_directory_and_the_command(tmp_path: Path) -> None:
    lists = DncLists(tmp_path)
    message = f"'litigators' does not exist in {tmp_path}.*predial dnc add --dir {tmp_path}"
    with pytest.raises(ConfigurationError, match=message):
        lists.check_names(["litigators"])
    with pytest.raises(ConfigurationError, match="'litigators'"):
        lists.first_hit("+12025550123", ["litigators"])
    with pytest.raises(ConfigurationError, match="not allowed"):
        lists.check_names(["../etc"])


def test_a_change_from_another_writer_is_seen_after_the_refresh_interval_without_a_stat_per_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    DncList(tmp_path, "internal").add(["+12025550100"], by="test")
    clock = Clock()
    lists = DncLists(tmp_path, clock=clock)
    lists.check_names(["internal"])
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(_dnc_lists.os, "stat", lambda *a, **k: stats.append(a) or real_stat(*a))
    DncList(tmp_path, "internal").add(["+12025550123"], by="another process")
    stats.clear()  # (os.stat is the os module's: the writer's own calls counted too)
    for _ in range(1000):
        assert lists.first_hit("+12025550123", ["internal"]) is None  # not looked yet
    assert stats == []
    clock.now += 1.0
    assert lists.first_hit("+12025550123", ["internal"]) == "internal"
    assert len(stats) == 1


def test_the_internal_list_records_who_added_and_removed_and_when(tmp_path: Path) -> None:
    internal = DncList(tmp_path, "internal")
    at = datetime(2026, 4, 11, 12, 0, tzinfo=UTC)
    assert internal.add(["+12025550123", "+12025550124"], by="agent-7", reason="asked", at=at) == 2
    assert internal.add(["+12025550123"], by="agent-8") == 0
    with internal.open() as store:
        assert store.generation == 1  # the second add changed nothing: no rewrite
    entry = internal.entry("+12025550124")
    assert entry is not None
    assert (entry.at, entry.by, entry.reason) == (at, "agent-7", "asked")
    assert internal.remove(["+12025550124", "+12025550199"], by="admin", reason="consent") == 1
    assert internal.entry("+12025550124") is None
    assert [(e.action, e.by) for e in internal.history("+12025550124")] == [
        ("add", "agent-7"),
        ("remove", "admin"),
    ]
    with internal.open() as store:
        assert "+12025550124" not in store
        assert "+12025550123" in store
    with pytest.raises(ValueError, match=r"\+4420\*\*\*0000: not a US/NANP number"):
        internal.add(["+442079460000"], by="x")


def test_adding_many_numbers_is_one_rewrite(tmp_path: Path) -> None:
    internal = DncList(tmp_path, "internal")
    internal.add(["+12025550100"], by="test")
    internal.add([f"+1{200 + n % 700}555{n:04d}" for n in range(2000)], by="bulk")
    with internal.open() as store:
        assert store.generation == 2
        assert store.count == 2001
    assert len(internal.history()) == 2001


def test_a_torn_history_line_is_skipped(tmp_path: Path) -> None:
    internal = DncList(tmp_path, "internal")
    internal.add(["+12025550100"], by="test")
    with open(internal.history_path, "a") as history:
        history.write('{"at": "2026-')
    assert [e.number for e in internal.history()] == ["+12025550100"]


def test_a_reader_keeps_answering_while_a_writer_replaces_the_file(tmp_path: Path) -> None:
    base = [f"+1202555{n:04d}" for n in range(500)]
    DncList(tmp_path, "internal").add(base, by="test")
    lists = DncLists(tmp_path, refresh_seconds=0.0)  # reload on every change
    lists.check_names(["internal"])
    stop = threading.Event()
    errors: list[BaseException] = []
    generations = set()

    def read() -> None:
        try:
            while not stop.is_set():
                for number in base[::50]:
                    assert lists.first_hit(number, ["internal"]) == "internal"
                generations.add(lists._stores["internal"].generation)
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    writer = DncList(tmp_path, "internal")
    for n in range(30):
        writer.add([f"+1303555{n:04d}"], by="writer")
    stop.set()
    reader.join()
    assert errors == []
    assert lists.first_hit("+13035550029", ["internal"]) == "internal"
    assert len(generations) > 1  # it did see replaced files while reading


def test_removing_a_number_that_was_not_listed_records_nothing(tmp_path: Path) -> None:
    internal = DncList(tmp_path, "internal")
    internal.add(["+12025550123"], by="agent-7")
    assert internal.remove(["+12025550123", "+12025550199"], by="admin") == 1
    assert internal.remove(["+12025550123"], by="admin") == 0  # removed already
    assert [(e.number, e.action) for e in internal.history()] == [
        ("+12025550123", "add"),
        ("+12025550123", "remove"),
    ]


def test_a_folder_where_a_list_file_should_be_is_one_line_saying_so(tmp_path: Path) -> None:
    (tmp_path / "dirlist.pdnc").mkdir()
    message = (
        f"do-not-call list 'dirlist': {tmp_path / 'dirlist.pdnc'} is not a file "
        r"\(a directory\?\); move it out of the lists' directory"
    )
    with pytest.raises(ConfigurationError, match=message):
        DncList(tmp_path, "dirlist").add(["+12025550123"], by="test")
    with pytest.raises(ConfigurationError, match=message):
        DncList(tmp_path, "dirlist").open()
    assert not list(tmp_path.glob(".*partial"))


def test_a_list_changed_in_place_and_unreadable_is_dropped_not_read_past_its_end(
    tmp_path: Path,
) -> None:
    internal = DncList(tmp_path, "internal")
    internal.add(["+12025550123"], by="test")
    clock = Clock()
    lists = DncLists(tmp_path, clock=clock)
    assert lists.first_hit("+12025550123", ["internal"]) == "internal"
    os.chmod(internal.path, 0o644)
    os.truncate(internal.path, 0)  # `> internal.pdnc`: same file, now empty
    lists.refresh()
    # The old map now reads past the file's end (SIGBUS): it must be gone before
    # any lookup touches it, and the list raises (the gate fails closed) ...
    assert "internal" not in lists._stores
    with pytest.raises(ConfigurationError, match="damaged"):
        lists.first_hit("+12025550123", ["internal"])
    # ... until the file is good again.
    internal.path.unlink()
    internal.add(["+12025550123"], by="test")
    assert lists.first_hit("+12025550123", ["internal"]) == "internal"


def test_a_list_replaced_by_a_damaged_file_keeps_its_last_good_version(
    tmp_path: Path,
) -> None:
    internal = DncList(tmp_path, "internal")
    internal.add(["+12025550123"], by="test")
    lists = DncLists(tmp_path, clock=Clock())
    assert lists.first_hit("+12025550123", ["internal"]) == "internal"
    partial = tmp_path / "other"
    partial.write_bytes(b"garbage")
    partial.replace(internal.path)  # a rename: the loaded version is still whole
    lists.refresh()
    assert lists.first_hit("+12025550123", ["internal"]) == "internal"
