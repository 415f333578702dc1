"""The lead importer: every valid lead into a campaign exactly once, and the truth
about every row.

    report = predial.lupitor.import_leads("leads.csv", campaign_id="cmp_1", region="US")

Rows are read as a stream (memory stays flat for millions of rows), validated with
the `Lead` model and the phone policy, deduplicated the way the server does
(externalId, then phone), and sent in batches through the rate-limited client.
Each row's outcome is written to a SQLite journal as answers arrive, so a killed
import resumes where it stopped: confirmed rows are never sent again, and rows
that were in flight are sent again for the server's dedup to absorb.

Prefetch-only leads (externalId, no phone) go in bulk; the older API version
refuses them in bulk ("leads[N]: phoneNumber is required"), and then they are sent
one by one with bounded concurrency. `api_version="auto"` finds out from the
server's answer. That older version does not deduplicate such leads, so before the
first one is sent the campaign is listed once, and a lead whose externalId is
already there is journaled `already_present` and not sent: an import run again with
a fresh journal (or `--wait` with another one) adds nothing twice.

One ambiguity is reported as it is: when a request's answer is lost and the resend
says "already present", the lead is counted as created by this import (the lost
attempt created it), which is wrong only for a lead that was in the campaign
before the import *and* in that very batch.

One import at a time: the journal and the input file (into its campaign) are
locked for the whole run (`ImportLock`), so a second import of the same file fails
at once with `ImportInProgress` naming the first, or, with `wait=True`, waits for
it and then resumes from the journal it wrote. A dry run takes no lock, and reads
the journal (a copy in memory) without writing or creating it: it counts what a
real run would send now.

The journal belongs to one import of one file into one campaign: by default
`leads.csv.journal.sqlite`, or, when that records another campaign,
`leads.csv.<campaign>.journal.sqlite` (`Journal.path_for`).

Nothing given is overwritten by mistake: a rejects file that is the input, the
journal or one of its files, and a journal that is the input, are refused
(`ConfigurationError`) before anything is read or written; so is, for a dry run,
the rejects file a real run of its journal wrote (the journal records it). A
rejects file that could not be written at the end (its folder missing or not
writable, a device) is refused then too, and it is written beside itself and put
in place, so a failure leaves the earlier one whole.

The file is decoded strictly (`predial._tabular`): a row with a byte that is not
valid in the file's encoding is rejected, never sent altered; the encoding used is
in the report and the journal, and a resume must read the file the same way.
"""

from __future__ import annotations

import asyncio
import csv
import difflib
import hashlib
import heapq
import json
import logging
import math
import os
import re
import secrets
import stat
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .._faults import safe_text
from .._models import Lead
from .._phone import PhonePolicy
from .._redaction import redact
from .._resolver import Resolver
from .._tabular import detect_encoding, read_header, read_rows, table_format
from ..errors import (
    ConfigurationError,
    ImportInProgress,
    InputFileError,
    LupitorAnswerLost,
    LupitorRateLimited,
    LupitorUnavailable,
    LupitorValidationError,
    Unresolvable,
)
from ._client import MAX_BULK, AsyncLupitorClient, Waiting
from ._columns import ColumnMap, Rejection
from ._journal import STATUSES, ImportLock, Journal, holder, recorded_rejects

__all__ = [
    "ApiVersion",
    "ImportProgress",
    "ImportReport",
    "campaign_problem",
    "import_leads",
    "import_leads_async",
    "verify_problem",
]

log = logging.getLogger(__name__)

ApiVersion = Literal["auto", "v1", "v2"]
#: Seconds between tries of a lock another import holds (`wait=True`).
LOCK_POLL = 0.25
#: What a spreadsheet takes for the start of a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A byte that did not decode (a lone surrogate, U+DC00 + byte) or a NUL: shown in
#: the rejects file as `\xNN` text.
_UNREADABLE = re.compile("[\x00\udc00-\udcff]")


# A rejection reason starts with the value it refused, masked ("+1202***0123: ",
# "***34: "): left out when grouping, so rows refused for one cause group together.
_MASKED_VALUE = re.compile(r"^'?\+?\d*\*\*\*\d*: ")


def _rejected_causes(journal: Journal) -> list[tuple[str, int]]:
    """The rejected rows grouped by column and reason, most first."""
    causes: Counter[str] = Counter()
    for _line, status, column, reason in journal.problems():
        if status != "rejected":
            continue
        cause = _MASKED_VALUE.sub("", reason or "unknown reason")
        causes[f"{column}: {cause}" if column else f"unreadable row: {cause}"] += 1
    return causes.most_common()


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where an import stands, given to `progress` as it goes.

    Counts are of rows, never lines or bytes: `total` is every row of the file
    (blank rows are not rows), `settled` the rows with an outcome, earlier runs'
    included (`done_before` of them were settled before this run started), so a
    resumed import starts part way and ends at `total`. `sent` is how many rows
    this run put into requests (a dry run: would send). `rate_limit_wait` is how
    many seconds, from when this was made, the rate limit needs at least to send
    the rows not sent yet (an estimate: the rows still unread are assumed to be
    sendable in the proportion seen so far). `waiting` is the wait the client is in
    when this was made (a 429's Retry-After, the rate limit, a retry's backoff),
    or None; a progress is given when each wait starts and ends."""

    total: int
    settled: int
    sent: int
    done_before: int
    rate_limit_wait: float = 0.0
    waiting: Waiting | None = None


Progress = Callable[[ImportProgress], None]


@dataclass
class ImportReport:
    """Counts over the whole file (earlier, resumed runs included).

    `rows` counts the file's rows; blank rows are not rows, and `blank_rows` says
    how many were skipped. `failed_causes` groups the failed rows by cause,
    `rejected_columns` the rejected rows by the column at fault (None: the row as
    a whole could not be read), `rejected_causes` by column and reason (the masked
    value left out, so like rows group), and `would_not_resolve_reasons` the leads `verify`
    found unresolvable by reason, each as (what, count), most first;
    `not_resolving` lists the first 1,000 of those leads as (line, reason)."""

    rows: int = 0
    blank_rows: int = 0
    #: Rows valid, unique and not yet settled: what this run sent (or would send).
    sendable: int = 0
    created: int = 0
    already_present: int = 0
    duplicates_in_file: int = 0
    rejected: int = 0
    failed: int = 0
    in_flight: int = 0
    would_not_resolve: int = 0
    bulk_requests: int = 0
    single_requests: int = 0
    #: This run's 429 answers, retries (after a 5xx or a dropped connection) and
    #: seconds waited because of each (`AsyncLupitorClient.stats`).
    answered_429: int = 0
    retries: int = 0
    waited_429: float = 0.0
    waited_limit: float = 0.0
    waited_retry: float = 0.0
    elapsed: float = 0.0
    resumed: bool = False
    dry_run: bool = False
    journal: str | None = None
    rejects: str | None = None
    columns: str = ""
    #: The codec the file was read with (`utf-8`, `utf-8-sig`, `cp1252`, ...).
    encoding: str = ""
    not_resolving: list[tuple[int, str]] = field(default_factory=list)
    failed_causes: list[tuple[str, int]] = field(default_factory=list)
    rejected_columns: list[tuple[str | None, int]] = field(default_factory=list)
    rejected_causes: list[tuple[str, int]] = field(default_factory=list)
    would_not_resolve_reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def accounted(self) -> bool:
        """Every row has a final outcome: nothing failed and nothing is in flight."""
        return self.failed == 0 and self.in_flight == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accounted"] = self.accounted
        for name in (
            "not_resolving",
            "failed_causes",
            "rejected_columns",
            "rejected_causes",
            "would_not_resolve_reasons",
        ):
            data[name] = [list(item) for item in getattr(self, name)[:100]]
        return data


@dataclass(frozen=True, slots=True)
class _Pending:
    line: int
    lead: Lead
    #: An earlier run sent this row without recording the answer (killed, or failed
    #: after a request that may have landed): a "skipped" now means it landed then.
    attempted: bool = False


class _Tracker:
    """Counts rows as they go and tells `progress`, at most every `EVERY` seconds
    for single rows (a file of rejected rows would otherwise call it per row)."""

    EVERY = 0.1

    def __init__(
        self,
        progress: Progress | None,
        client: AsyncLupitorClient | None,
        total: int,
        done_before: int,
        batch_size: int,
    ) -> None:
        self.progress = progress
        self.client = client
        self.total = total
        self.done_before = done_before
        self.batch_size = batch_size
        self.settled = done_before
        self.sent = 0
        #: Rows this run looked at (those an earlier run settled are not), of which
        #: `sendable` are valid and unique, `prefetch` of those without a number;
        #: `queued` wait in the batch being filled.
        self.read = 0
        self.sendable = 0
        self.prefetch = 0
        self.queued = 0
        self.singles = False
        self._last = -math.inf

    def tell(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.EVERY:
            return
        self._last = now
        self.progress(
            ImportProgress(
                total=self.total,
                settled=self.settled,
                sent=self.sent,
                done_before=self.done_before,
                rate_limit_wait=self._rate_limit_wait(),
                waiting=self.client.waiting() if self.client is not None else None,
            )
        )

    def waits_changed(self) -> None:
        """The client started or ended a wait: told at once (a 429 can hold every
        request for a minute, and the operator should see why nothing moves)."""
        self.tell(force=True)

    def _rate_limit_wait(self) -> float:
        if self.client is None:
            return 0.0
        unread = max(0, self.total - self.done_before - self.read)
        share = self.sendable / self.read if self.read else 1.0
        unsent = round(unread * share) + self.queued
        if not unsent:
            return 0.0
        singles = 0
        if self.singles:
            # The older API takes prefetch leads one by one, under the other limit.
            singles = round(unsent * (self.prefetch / self.sendable if self.sendable else 0.0))
        batches = math.ceil((unsent - singles) / self.batch_size)
        return self.client.rate_limit_wait(bulk=batches, other=singles)


class _Importer:
    def __init__(
        self,
        client: AsyncLupitorClient | None,
        campaign_id: str,
        journal: Journal,
        report: ImportReport,
        api_version: ApiVersion,
        concurrency: int,
        tracker: _Tracker,
    ) -> None:
        self.client = client
        self.campaign_id = campaign_id
        self.journal = journal
        self.report = report
        self.singles_for_prefetch = api_version == "v1"
        self.auto = api_version == "auto"
        self.concurrency = concurrency
        self.tracker = tracker
        tracker.singles = self.singles_for_prefetch
        self.uncertain: list[_Pending] = []
        #: Digests of the campaign's externalIds, listed once before the first lead
        #: is sent one by one (the older API would store a lead it has again).
        self.present: set[int] | None = None

    def settled(self, count: int) -> None:
        if count:
            self.tracker.settled += count
            self.tracker.tell(force=count > 1)

    async def send(self, batch: list[_Pending]) -> None:
        """Send one batch and journal each row's outcome."""
        journal = self.journal
        tracker = self.tracker
        tracker.queued -= len(batch)
        tracker.sent += len(batch)
        tracker.tell(force=True)
        for item in batch:
            journal.record(item.line, "sending", identifier=_identifier(item.lead))
        journal.flush()
        bulk = batch
        singles: list[_Pending] = []
        if self.singles_for_prefetch:
            bulk = [item for item in batch if item.lead.phone_number is not None]
            singles = [item for item in batch if item.lead.phone_number is None]
        if bulk:
            await self._send_bulk(bulk)
        if singles:
            await self._send_singles(singles)
        journal.flush()
        self.settled(len(batch))

    async def _send_bulk(self, batch: list[_Pending]) -> None:
        assert self.client is not None
        self.report.bulk_requests += 1
        try:
            result = await self.client.create_leads_bulk(
                self.campaign_id, [item.lead for item in batch]
            )
        except LupitorValidationError as error:
            row = _BULK_ROW.match(error.message)
            if row is not None and int(row.group(1)) < len(batch):
                # One lead refused: reject it and send the others again.
                bad = batch[int(row.group(1))]
                if "phoneNumber is required" not in row.group(2) or self.singles_for_prefetch:
                    self.journal.record(
                        bad.line,
                        "rejected",
                        identifier=_identifier(bad.lead),
                        reason=f"refused by the API: {row.group(2)}",
                    )
                    rest = [item for item in batch if item is not bad]
                    if rest:
                        await self._send_bulk(rest)
                    return
            if "phoneNumber is required" in error.message and not self.singles_for_prefetch:
                # The older API version: prefetch-only leads must go one by one.
                self.singles_for_prefetch = self.tracker.singles = True
                with_phone = [item for item in batch if item.lead.phone_number is not None]
                without = [item for item in batch if item.lead.phone_number is None]
                if with_phone:
                    await self._send_bulk(with_phone)
                await self._send_singles(without)
                return
            self._fail(batch, f"the API refused the batch: {error.message}")
            return
        except (LupitorUnavailable, LupitorRateLimited) as error:
            self._fail(batch, str(error))
            return
        skipped = set(result.skipped_identifiers)
        created_ids = iter(result.created_ids)
        created_count = len(batch) - sum(1 for item in batch if _skipped(item.lead, skipped))
        ids_match = len(result.created_ids) == created_count
        for item in batch:
            identifier = _identifier(item.lead)
            if not _skipped(item.lead, skipped):
                lead_id = next(created_ids, None) if ids_match else None
                self.journal.record(item.line, "created", identifier=identifier, lead_id=lead_id)
            elif result.retried or item.attempted:
                self.journal.record(
                    item.line,
                    "created",
                    identifier=identifier,
                    reason="confirmed on resend: the first answer was lost",
                )
            else:
                self.journal.record(item.line, "already_present", identifier=identifier)

    async def _listed(self) -> set[int]:
        """The campaign's externalIds (as digests), listed on the first call."""
        assert self.client is not None
        if self.present is None:
            present: set[int] = set()
            async for stored in self.client.list_leads(self.campaign_id, page_size=8000):
                digest = _digest(stored.external_id)
                if digest is not None:
                    present.add(digest)
            self.present = present
        return self.present

    async def _send_singles(self, items: list[_Pending]) -> None:
        assert self.client is not None
        client = self.client
        gate = asyncio.Semaphore(self.concurrency)
        present = await self._listed() if any(not item.attempted for item in items) else set()

        async def one(item: _Pending) -> None:
            if item.attempted:
                # Sent by a run that was killed before the answer: the older API would
                # not dedup a resend, so look for it in the campaign first.
                self.uncertain.append(item)
                return
            if _digest(item.lead.external_id) in present:
                # In the campaign already (an earlier import, or one with another
                # journal): the older API would store it a second time.
                self.journal.record(item.line, "already_present", identifier=_identifier(item.lead))
                return
            async with gate:
                self.report.single_requests += 1
                identifier = _identifier(item.lead)
                try:
                    # The older API does not dedup externalId-only leads: a resend
                    # after a lost answer could create the lead twice. Such leads
                    # are settled by listing the campaign instead (settle_uncertain).
                    created = await client.create_lead(
                        item.lead, exist_ok=True, resend_uncertain=False
                    )
                except LupitorAnswerLost:
                    self.uncertain.append(item)
                    return
                except (LupitorUnavailable, LupitorRateLimited) as error:
                    self._fail([item], str(error))
                    return
                except LupitorValidationError as error:
                    self._fail([item], f"the API refused the lead: {error.message}")
                    return
                if created.already_present and not created.retried:
                    self.journal.record(item.line, "already_present", identifier=identifier)
                else:
                    self.journal.record(
                        item.line, "created", identifier=identifier, lead_id=created.lead_id
                    )
                # One at a time, a batch takes minutes: journal each answer at once, so
                # a kill loses none of them.
                self.journal.flush()

        try:
            async with asyncio.TaskGroup() as group:
                for item in items:
                    group.create_task(one(item))
        except BaseExceptionGroup as group_error:
            # A fatal API error (bad key, unknown campaign) is one clear error, not a group.
            first = group_error.exceptions[0]
            if isinstance(first, Exception):
                raise first from None
            raise

    async def settle_uncertain(self, rounds: int = 6) -> None:
        """Creates whose answer was lost: list the campaign once per round, count the
        leads found as created, and send the others again. The last round only
        lists: what is still missing then is failed (a rerun sends it again), never
        resent without a look."""
        if self.client is None:
            return
        for round_number in range(1, rounds + 1):
            if not self.uncertain:
                return
            present: set[int] = set()
            async for stored in self.client.list_leads(self.campaign_id, page_size=8000):
                digest = _digest(stored.external_id)
                if digest is not None:
                    present.add(digest)
            pending, self.uncertain = self.uncertain, []
            missing = []
            for item in pending:
                if _digest(item.lead.external_id) in present:
                    self.journal.record(
                        item.line,
                        "created",
                        identifier=_identifier(item.lead),
                        reason="answer lost; found in the campaign",
                    )
                else:
                    # Not in the campaign: its earlier attempt did not land.
                    missing.append(replace(item, attempted=False))
            if round_number == rounds:
                self._fail(missing, "answer lost; not in the campaign after several tries")
            elif missing:
                await self._send_singles(missing)
            self.journal.flush()

    def _fail(self, batch: list[_Pending], reason: str) -> None:
        for item in batch:
            self.journal.record(
                item.line, "failed", identifier=_identifier(item.lead), reason=reason
            )


_BULK_ROW = re.compile(r"leads\[(\d+)\]: (.*)")
_FINAL_CODES = [code for code in range(1, len(STATUSES) + 1) if Journal.is_final(code)]


def _identifier(lead: Lead) -> str:
    return lead.external_id or lead.phone_number or ""


def _skipped(lead: Lead, skipped: set[str]) -> bool:
    # v2 names a skipped lead by externalId (else phone); v1 by phone.
    return (lead.external_id is not None and lead.external_id in skipped) or (
        lead.phone_number is not None and lead.phone_number in skipped
    )


def _digest(value: str | None) -> int | None:
    if value is None:
        return None
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=12).digest())


def _header(path: Path, encoding: str) -> list[str]:
    if table_format(path) == "csv":
        return read_header(path, encoding)
    names: dict[str, None] = {}
    first_error: tuple[int, str] | None = None
    count = 0
    for count, row in enumerate(read_rows(path, encoding), start=1):
        if "__error__" in row.fields:
            if first_error is None:
                first_error = (row.line, str(row.fields["__error__"]))
        else:
            names.update(dict.fromkeys(k for k in row.fields if not k.startswith("__")))
        if count > 100:  # JSON Lines objects may differ: look at the first hundred
            break
    if not names and first_error is not None:
        line, reason = first_error
        if count == 1 and line == 1 and not _has_line_end(path):
            raise InputFileError(
                f"{path}: the file has no line ends, and its one line is no JSON object "
                f"({reason}); JSON Lines needs one object per line, each ending with a "
                "line feed (LF)"
            )
        raise InputFileError(
            f"{path}: no JSON object could be read in its first lines (line {line}: "
            f"{reason}); JSON Lines needs one object per line"
        )
    return list(names)


def _has_line_end(path: Path) -> bool:
    """Whether the file holds a line feed (read only to word an error)."""
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                if b"\n" in chunk:
                    return True
    except OSError:
        return True  # cannot tell: say nothing about line ends
    return False


def _same_file(first: Path, second: Path) -> bool:
    """The same file: the same resolved path, or (both existing) the same inode."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False  # one of them does not exist (yet)


def _check_paths(source: Path, journal: Path, rejects: Path | None) -> None:
    """Refuse what would overwrite the input or the journal, before anything is read
    or written: a journal that is the input, a rejects file that is the input, the
    journal or one of its files."""
    if _same_file(journal, source):
        raise ConfigurationError(
            f"--journal {journal}: that is the input file; the journal needs a file of its "
            f"own (by default {Journal.default_path(source).name}, beside the input)"
        )
    if rejects is None:
        return
    if _same_file(rejects, source):
        raise ConfigurationError(
            f"--rejects {rejects}: that is the input file, which the rejected rows would "
            "overwrite; name another file"
        )
    bases = dict.fromkeys((str(journal), os.path.realpath(journal)))
    for base in bases:
        for suffix, what in (
            ("", "the journal"),
            ("-wal", "the journal's -wal file"),
            ("-shm", "the journal's -shm file"),
            (".lock", "the journal's lock file"),
        ):
            if _same_file(rejects, Path(base + suffix)):
                raise ConfigurationError(
                    f"--rejects {rejects}: that is {what} ({base + suffix}), which the "
                    "rejected rows would overwrite; name another file"
                )


def _check_rejects_target(rejects: Path) -> None:
    """Refuse, before anything is read or sent, a rejects file that could not be
    written at the end: in a folder that does not exist or cannot be written, a
    folder itself, or not a regular file (`/dev/full`, a pipe). The file is written
    beside itself and then put in place (`_write_rejects`), so what decides is the
    folder: a file is made in it and removed again to find out."""
    named = f"--rejects {rejects}"
    try:
        found = os.stat(rejects)
    except (FileNotFoundError, NotADirectoryError):
        found = None  # the folder is looked at next
    except OSError as error:
        raise ConfigurationError(
            f"{named}: cannot be used ({error.strerror or error}); name another file"
        ) from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise ConfigurationError(
            f"{named}: that is a folder; name a file in it, e.g. --rejects "
            f"{rejects / 'rejects.csv'}"
        )
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise ConfigurationError(
            f"{named}: not a regular file (a device, a pipe or a socket); name a file to "
            "write the rejected rows to"
        )
    if found is not None and not os.access(rejects, os.W_OK):
        # Replacing it would work (the folder decides), but a read-only file is
        # one its owner meant to keep.
        raise ConfigurationError(
            f"{named}: the file is read-only; make it writable, or name another file"
        )
    folder = Path(os.path.realpath(rejects)).parent
    if not folder.is_dir():
        if folder.exists():
            raise ConfigurationError(
                f"{named}: {folder} is a file, not a folder; name a file in a folder"
            )
        raise ConfigurationError(
            f"{named}: the folder {folder} does not exist; create it, or name a file in a "
            "folder that exists"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".predial-rejects-", dir=folder)
    except OSError as error:
        raise ConfigurationError(
            f"{named}: no file can be written in {folder} ({error.strerror or error}); "
            "make it writable, or name a file in another folder"
        ) from None
    os.close(handle)
    os.unlink(probe)


def _check_dry_run_rejects(journal: Path, rejects: Path) -> None:
    """A dry run never overwrites the rejects file a real run of its journal wrote:
    that file lists the rows the real import rejected or failed to send, and a dry
    run's list of what it would reject is no replacement."""
    written = recorded_rejects(journal)
    if written is None or not _same_file(rejects, Path(written)):
        return
    if not os.path.exists(written):
        return  # gone already: nothing to lose
    suggestion = rejects.with_name(f"{rejects.stem}.dry-run{rejects.suffix or '.csv'}")
    raise ConfigurationError(
        f"--rejects {rejects}: the real import recorded in {journal} wrote its "
        "rejected rows there, and a dry run does not overwrite them; name another file "
        f"(e.g. --rejects {suggestion}) or leave --rejects out"
    )


class _Unresolved:
    """The leads `verify` found would not resolve: line and reason of each, kept
    compact (a few bytes a row) for the rejects file, counted by reason."""

    #: Distinct reason texts kept; past it, a lead's text is its reason code alone.
    TEXTS = 10_000

    def __init__(self) -> None:
        self.lines = array("q")
        self.texts = array("l")
        self._text_ids: dict[str, int] = {}
        self._text_list: list[str] = []
        self.reasons: Counter[str] = Counter()

    def add(self, line: int, refusal: Unresolvable) -> None:
        self.reasons[refusal.reason] += 1
        # Numbers masked and credentials redacted: the text may quote the CRM.
        text = redact(str(refusal), limit=300)
        if text not in self._text_ids and len(self._text_list) >= self.TEXTS:
            text = refusal.reason
        ident = self._text_ids.get(text)
        if ident is None:
            ident = self._text_ids[text] = len(self._text_list)
            self._text_list.append(text)
        self.lines.append(line)
        self.texts.append(ident)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(line, reason text), in file order."""
        for line, ident in zip(self.lines, self.texts, strict=True):
            yield line, self._text_list[ident]


#: The Leads API's longest campaign id (`Lead.campaign_id`).
MAX_CAMPAIGN_ID = 256


def campaign_problem(campaign_id: str) -> str | None:
    """What is wrong with `campaign_id` as a campaign to import into, or None:
    empty, longer than the API takes, blanks around it (each lead would be sent
    without them, the journal and the listing with them), or a control character.
    Checked before anything is read: every row would be refused alike."""
    if not campaign_id.strip():
        return "a campaign id cannot be empty; give the campaign's id, e.g. cmp_1"
    if len(campaign_id) > MAX_CAMPAIGN_ID:
        return (
            f"the campaign id is {len(campaign_id):,} characters long; Lupitor's are "
            f"at most {MAX_CAMPAIGN_ID}: give the campaign's id, e.g. cmp_1"
        )
    if campaign_id != campaign_id.strip():
        return f"{campaign_id!r} has blanks around it; give the id without them"
    if any(not character.isprintable() for character in campaign_id):
        return f"{campaign_id!r} holds a control character; give the campaign's id as shown"
    return None


def verify_problem(
    resolver: Resolver,
    campaign_id: str,
    where: str = "the resolver's configuration",
    option: str = "verify",
) -> str | None:
    """Why `resolver` cannot verify the leads of `campaign_id`, as one line naming
    `where` the campaigns come from (a predial.toml) and the `option` asking for it,
    or None. A campaign it does not have, or one whose adapter could not be built,
    is a configuration mistake: no lead of the import could be verified."""
    runtime = resolver.campaigns.get(campaign_id)
    if runtime is None:
        configured = sorted(resolver.campaigns)
        close = difflib.get_close_matches(campaign_id, configured, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(configured[:10]) + (", ..." if len(configured) > 10 else "")
        return (
            f"campaign {campaign_id!r} is not in {where} (configured: {listed or 'none'})"
            f"{hint}; {option} needs the campaign's adapter"
        )
    if runtime.error is not None:
        return (
            # The adapter's error names the file and the key path already.
            f"campaign {campaign_id!r} is misconfigured: {safe_text(runtime.error)}; "
            f"{option} needs the campaign's adapter: fix the configuration "
            "(predial config validate)"
        )
    return None


async def _verify(
    resolver: Resolver,
    lead: Lead,
    report: ImportReport,
    line: int,
    unresolved: _Unresolved,
) -> None:
    if lead.external_id is None:
        return  # a standard lead is dialled at its own number: nothing to resolve
    try:
        # The lead as it will be imported, its stored number included: the resolver
        # falls back to that number when the CRM has none, so the verdict is the one
        # the dialer will get. Not through the compliance gate: the hour and the caps
        # are judged when the lead is dialled, and a check must not use up a call.
        await resolver._resolve(lead, gated=False)
    except Unresolvable as refusal:
        report.would_not_resolve += 1
        unresolved.add(line, refusal)
        if len(report.not_resolving) < 1000:
            report.not_resolving.append((line, refusal.reason))


async def import_leads_async(
    path: str | Path,
    campaign_id: str,
    *,
    client: AsyncLupitorClient | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    batch_size: int = 500,
    region: str | None = None,
    policy: PhonePolicy | None = None,
    mapping: Mapping[str, str] | None = None,
    journal_path: str | Path | None = None,
    rejects_path: str | Path | None = None,
    dry_run: bool = False,
    api_version: ApiVersion = "auto",
    concurrency: int = 8,
    verify: Resolver | None = None,
    progress: Progress | None = None,
    on_columns: Callable[[str], None] | None = None,
    encoding: str | None = None,
    wait: bool = False,
    on_notice: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import `path` into `campaign_id`; see the module docstring. `client` (or
    `api_key`/`base_url`, else the environment) talks to the API; `verify` resolves
    each prefetch lead through its predial adapter first and reports those that
    would not resolve (they are still imported; `rejects_path` lists them too).
    `encoding` overrides the detection (`predial._tabular`); `wait` waits for
    another import of the same file or journal instead of raising
    `ImportInProgress`. `on_notice` is called with a line for the operator (the
    file read as cp1252, whose import this one waits for); without it these are
    logged as warnings. `progress` is called with an `ImportProgress` once the
    file's rows are counted (a first read of the file, done only when `progress`
    is given), as rows are sent and settled (at most every 0.1 s for single rows),
    and at the end."""
    if not 1 <= batch_size <= MAX_BULK:
        raise ValueError(f"batch_size must be between 1 and {MAX_BULK}")
    wrong = campaign_problem(campaign_id)
    if wrong is not None:
        raise ValueError(f"campaign_id: {wrong}")
    if verify is not None:
        # Before anything is read, sent or journaled: every lead would be refused alike.
        problem = verify_problem(verify, campaign_id)
        if problem is not None:
            raise ConfigurationError(problem)
    source = Path(path)
    started = time.monotonic()
    # The default journal is the file's first campaign's; another campaign's import
    # of the same file gets a journal of its own (`Journal.path_for`).
    chosen = not journal_path
    journal_file = Path(journal_path) if journal_path else Journal.path_for(source, campaign_id)
    rejects_file = Path(rejects_path) if rejects_path is not None else None
    _check_paths(source, journal_file, rejects_file)
    if rejects_file is not None:
        # Before anything is sent: a folder that does not exist found at the end
        # would cost the operator the rejected rows of an import already done.
        _check_rejects_target(rejects_file)
        if dry_run:
            _check_dry_run_rejects(journal_file, rejects_file)
    notify = on_notice if on_notice is not None else log.warning
    codec = detect_encoding(source, encoding, notice=on_notice)
    header = _header(source, codec)
    columns = ColumnMap(header, mapping)
    if on_columns is not None:
        on_columns(columns.describe())
    policy = policy or PhonePolicy(default_region=region)
    lock: ImportLock | None = None
    # The client first: a missing key must not leave a journal behind.
    own_client = client is None and not dry_run
    if own_client:
        client = AsyncLupitorClient(api_key, base_url=base_url)
    try:
        if not dry_run:
            lock, journal_file = await _locked(
                source, journal_file, chosen, campaign_id, rejects_file, wait, notify
            )
        # A dry run reads the journal (what a real run would not send again) and
        # writes nothing: it works on a copy in memory, and creates no file.
        journal = Journal(
            journal_file,
            source=source,
            campaign_id=campaign_id,
            read_only=dry_run,
            encoding=codec,
        )
        report = ImportReport(
            resumed=journal.resumed,
            dry_run=dry_run,
            journal=None if dry_run and not journal.resumed else str(journal_file),
            columns=columns.describe(),
            encoding=codec,
        )
        unresolved = _Unresolved()
        tracker = _Tracker(None, client, 0, 0, batch_size)
        before = client.stats if client is not None else None
        listening = False
        try:
            statuses = journal.statuses()
            if progress is not None:
                # The bar's total is the file's rows, counted first (a read without
                # validation, small beside the import's rate-limited minutes), and a
                # resumed run starts at the rows its journal has settled.
                total = sum(1 for _ in read_rows(source, codec))
                done = sum(statuses.count(code) for code in _FINAL_CODES)
                tracker = _Tracker(progress, client, total, done, batch_size)
                tracker.tell(force=True)
                if client is not None:
                    client.add_wait_listener(tracker.waits_changed)
                    listening = True
            importer = _Importer(
                client, campaign_id, journal, report, api_version, concurrency, tracker
            )
            await _import_rows(
                source,
                codec,
                columns,
                policy,
                importer,
                verify,
                dry_run,
                batch_size,
                statuses,
                unresolved,
            )
            tracker.tell(force=True)
        except BaseException:
            journal.abandon()
            raise
        finally:
            if listening and client is not None:
                client.remove_wait_listener(tracker.waits_changed)
        if client is not None and before is not None:
            met = client.stats - before
            report.answered_429, report.retries = met.answered_429, met.retries
            report.waited_429, report.waited_limit = met.waited_429, met.waited_limit
            report.waited_retry = met.waited_retry
        try:
            counts = journal.counts()
            report.created = counts.get("created", 0)
            report.already_present = counts.get("already_present", 0)
            report.duplicates_in_file = counts.get("duplicate_in_file", 0)
            report.rejected = counts.get("rejected", 0)
            report.failed = counts.get("failed", 0)
            report.in_flight = counts.get("sending", 0)
            report.failed_causes = [
                (cause or "unknown", count) for cause, count in journal.grouped("failed")
            ]
            report.rejected_columns = journal.grouped("rejected", by="column")
            if report.rejected:
                report.rejected_causes = _rejected_causes(journal)
            report.would_not_resolve_reasons = unresolved.reasons.most_common()
            if rejects_file is not None:
                report.rejects = str(rejects_file)
                if not dry_run:
                    journal.note_rejects(rejects_file)
                _write_rejects(
                    source,
                    codec,
                    journal,
                    rejects_file,
                    unresolved,
                    columns.columns.get("external_id"),
                )
        except BaseException:
            journal.abandon()
            raise
        journal.close()  # a dry run's journal lived in memory: nothing is left on disk
    finally:
        try:
            if own_client and client is not None:
                await client.aclose()
        finally:
            if lock is not None:
                lock.release()
    report.elapsed = time.monotonic() - started
    return report


async def _locked(
    source: Path,
    journal_file: Path,
    chosen: bool,
    campaign_id: str,
    rejects_file: Path | None,
    wait: bool,
    notify: Callable[[str], None],
) -> tuple[ImportLock, Path]:
    """The import's locks, held, and the journal they guard. A journal chosen by
    default is chosen again once the locks are held: an import of the same file
    into another campaign, waited for (`wait`), may have made the default journal
    its own meanwhile."""
    while True:
        lock = ImportLock(journal_file, source, campaign_id)
        await _acquire(lock, wait, notify)
        if not chosen:
            return lock, journal_file
        now = Journal.path_for(source, campaign_id)
        if now == journal_file:
            return lock, journal_file
        lock.release()
        journal_file = now
        _check_paths(source, journal_file, rejects_file)


async def _acquire(lock: ImportLock, wait: bool, notify: Callable[[str], None]) -> None:
    """Take the import's locks; if another import holds one, raise, or (`wait`) say
    whose it is and try again until it is free."""
    try:
        lock.acquire()
        return
    except ImportInProgress as busy:
        if not wait:
            raise
        owner = busy.owner
        source = Path(owner["source"]).name if owner else lock.source.name
        campaign = owner["campaign"] if owner else lock.campaign_id
        notify(
            f"waiting for another import of {source} into campaign {campaign} to "
            f"finish: {holder(owner)}"
        )
    while True:
        await asyncio.sleep(LOCK_POLL)
        try:
            lock.acquire()
        except ImportInProgress:
            continue  # still running: keep waiting
        return


async def _import_rows(
    source: Path,
    codec: str,
    columns: ColumnMap,
    policy: PhonePolicy,
    importer: _Importer,
    verify: Resolver | None,
    dry_run: bool,
    batch_size: int,
    statuses: bytearray,
    unresolved: _Unresolved,
) -> None:
    """Validate, deduplicate and send every row not settled by an earlier run."""
    journal = importer.journal
    report = importer.report
    tracker = importer.tracker
    campaign_id = importer.campaign_id
    seen_external: set[int] = set()
    seen_phone: set[int] = set()
    batch: list[_Pending] = []

    def blank(line: int) -> None:
        report.blank_rows += 1

    for row in read_rows(source, codec, on_blank=blank):
        report.rows += 1
        code = statuses[row.line] if row.line < len(statuses) else 0
        final = Journal.is_final(code)
        if not final:
            tracker.read += 1
        outcome = columns.lead(row.fields, campaign_id, policy)
        if isinstance(outcome, Rejection):
            if not final:
                journal.record(row.line, "rejected", column=outcome.column, reason=outcome.reason)
                importer.settled(1)
            continue
        lead = outcome.lead
        # 12-byte digests instead of the strings: a million UUID ids and phones
        # cost ~100 MB less, and a collision is a 1-in-10^29 event.
        external = _digest(lead.external_id)
        phone = _digest(lead.phone_number)
        if (external is not None and external in seen_external) or (
            phone is not None and phone in seen_phone
        ):
            if not final:
                journal.record(
                    row.line,
                    "duplicate_in_file",
                    identifier=_identifier(lead),
                    reason="same externalId or phone number as an earlier row",
                )
                importer.settled(1)
            continue
        if external is not None:
            seen_external.add(external)
        if phone is not None:
            seen_phone.add(phone)
        if final:
            continue
        if verify is not None:
            await _verify(verify, lead, report, row.line, unresolved)
        report.sendable += 1
        tracker.sendable += 1
        if lead.phone_number is None:
            tracker.prefetch += 1
        if dry_run:
            tracker.sent += 1  # would be sent
            importer.settled(1)
            continue
        attempted = code != 0 and not final  # "sending" or "failed" in an earlier run
        batch.append(_Pending(row.line, lead, attempted))
        tracker.queued += 1
        if len(batch) >= batch_size:
            await importer.send(batch)
            batch = []
    if batch:
        await importer.send(batch)
    await importer.settle_uncertain()


def _write_rejects(
    source: Path,
    codec: str,
    journal: Journal,
    target: Path,
    unresolved: _Unresolved,
    id_column: str | None,
) -> None:
    """A CSV of every rejected or failed row, and of every lead `verify` found
    would not resolve (status `would_not_resolve`, its id's column, the reason;
    such a lead was still imported): line, status, column, reason, then the row's
    own values, then `extra`, so it can be fixed and imported again. A failed row
    that would not resolve either is one row, both reasons given.

    It starts with a UTF-8 byte-order mark when the input had one (a UTF-8 or
    UTF-16 mark): the spreadsheet that wrote the file needs it to read UTF-8.

    A row rejected for a byte that is not valid in the file's encoding, or a NUL,
    keeps its values, each such byte shown as `\\xNN` text (`M\\xFCller`), which
    shows where it is. `extra` holds what has no column: a CSV row's values past
    the header's last column (a JSON array), a JSON Lines object's keys that are
    not among the columns (a JSON object; the columns are those of the file's first
    hundred objects). A row that could not be parsed at all (a field or line over
    10 MB, invalid JSON) has its line, status and reason only.

    It is meant to be opened in a spreadsheet, so no cell may start a formula: a
    value starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'`
    in front (OWASP's advice for CSV export), the header's too. Values are
    otherwise kept as they were (JSON Lines objects and arrays as JSON)."""
    problems = _merged(journal.problems(), unresolved, id_column)
    upcoming = next(problems, None)
    header = _header(source, codec)
    known = set(header)
    marked = codec in ("utf-8-sig", "utf-16")
    with (
        _replacing(target) as temporary,
        temporary.open("w", newline="", encoding="utf-8-sig" if marked else "utf-8") as file,
    ):
        writer = csv.writer(file)
        writer.writerow(
            [_cell(name) for name in ["line", "status", "column", "reason", *header, "extra"]]
        )
        if upcoming is None:
            return
        for row in read_rows(source, codec):
            while upcoming is not None and upcoming[0] < row.line:
                upcoming = next(problems, None)
            if upcoming is None:
                break
            if upcoming[0] == row.line:
                line, status, column, reason = upcoming
                fields = row.raw if row.raw is not None else row.fields
                values = [fields.get(name, "") for name in header]
                extra = _extra(fields, known)
                writer.writerow([_cell(v) for v in (line, status, column, reason, *values, extra)])
                upcoming = next(problems, None)


@contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A new file beside `target` to write, put in place of `target` when the block
    ends, removed if it fails: a rejects file is whole or not changed (a full disk
    or a kill while writing leaves the earlier one as it was). Named through a
    symbolic link, the file linked to is replaced. A failure to write is one
    `ConfigurationError` naming --rejects, after the import itself is done."""
    final = Path(os.path.realpath(target))
    temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        # The mode a plain open() gives (0666 less the umask), or the replaced file's.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        with suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(final).st_mode))
        yield temporary
        os.replace(temporary, final)
    except BaseException as error:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        # An error naming another file (the input, read again) is not the rejects'.
        if isinstance(error, OSError) and error.filename in (None, str(temporary), str(final)):
            raise ConfigurationError(
                f"--rejects {target}: could not be written ({error.strerror or error}); "
                "the import itself is journaled: rerun the same command (nothing is sent "
                "again) with --rejects naming a file where there is room"
            ) from None
        raise


def _merged(
    problems: Iterable[tuple[int, str, str | None, str | None]],
    unresolved: _Unresolved,
    id_column: str | None,
) -> Iterator[tuple[int, str, str | None, str | None]]:
    """The journal's problem rows and the leads that would not resolve, in file
    order, one entry per line."""
    verified = (
        (line, "would_not_resolve", id_column, f"would not resolve: {text}")
        for line, text in unresolved
    )
    merged = heapq.merge(problems, verified, key=lambda entry: entry[0])
    held = next(merged, None)
    while held is not None:
        following = next(merged, None)
        if following is not None and following[0] == held[0]:
            # A row of the journal's (failed) that would not resolve either.
            first, second = sorted((held, following), key=lambda e: e[1] == "would_not_resolve")
            line, status, column, reason = first
            held = (line, status, column, f"{reason or status}; and it {second[3]}")
            continue
        yield held
        held = following


def _extra(fields: Mapping[str, Any], known: set[str]) -> Any:
    """What a row holds that no column of the rejects file shows, or None."""
    if "__extra__" in fields:
        return fields["__extra__"]
    others = {
        key: value
        for key, value in fields.items()
        if key not in known and key not in ("__error__", "__extra__")
    }
    return others or None


def _cell(value: Any) -> str:
    """A value as a rejects-file cell that a spreadsheet shows as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        try:
            text = json.dumps(value, ensure_ascii=False)
        except RecursionError:
            text = "(a JSON value nested too deeply to write)"
    else:
        text = json.dumps(value) if isinstance(value, bool) else str(value)
    if not text.isascii() or "\x00" in text:
        text = _UNREADABLE.sub(_shown_byte, text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _shown_byte(match: re.Match[str]) -> str:
    """A byte that did not decode (U+DC00 + byte), or a NUL, as `\\xNN` text."""
    code = ord(match.group())
    return f"\\x{code - 0xDC00 if code else 0:02X}"


def import_leads(path: str | Path, campaign_id: str, **options: Any) -> ImportReport:
    """`import_leads_async` for scripts without an event loop."""
    return asyncio.run(import_leads_async(path, campaign_id, **options))
