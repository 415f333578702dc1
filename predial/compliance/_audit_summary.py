"""Reading audit records back: counts by campaign, status, source, reason, hour and
origin (`predial audit summarize`).

A line that is not a record (not JSON, not an object, a field missing or of the wrong
kind) is counted with its file and line number and passed over: one bad line never
sinks a summary of millions of good ones. A problem names the field, never quotes
the line (an audit file may have been mixed with anything).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["STATUSES", "AuditSummary", "MalformedLine", "summarize_audit"]

#: The statuses a record may have, as the service answers them.
STATUSES: Final = ("ok", "skip", "retry_later")
#: Malformed lines kept with their problem (all are counted).
MAX_PROBLEMS: Final = 100

# Fields whose absence makes a line no record; the others may be null.
_REQUIRED: Final = ("time", "campaign", "status")
_TEXT_FIELDS: Final = ("campaign", "source", "reason", "origin")


@dataclass(frozen=True, slots=True)
class MalformedLine:
    file: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}"


@dataclass
class AuditSummary:
    """Counts over audit records. `sources` and `reasons` are by status first: an
    `ok` record's source is where its number came from and its reason the fallback
    that gave it (empty when none); a refusal's reason is why, and its source that
    of the number it refused (empty when none was found)."""

    records: int = 0
    campaigns: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    sources: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    hours: Counter[str] = field(default_factory=Counter)
    origins: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    #: The first `MAX_PROBLEMS` malformed lines.
    problems: list[MalformedLine] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    def add_lines(self, lines: Iterable[str | bytes], file: str = "<lines>") -> None:
        """Count the records of `lines` (a file's, in order: line numbers from 1);
        blank lines are passed over."""
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            problem = self._add(line)
            if problem is not None:
                self.malformed += 1
                if len(self.problems) < MAX_PROBLEMS:
                    self.problems.append(MalformedLine(file, number, problem))

    def add_file(self, path: str | Path) -> None:
        """Count the records of the file at `path` (read as bytes, line by line: a
        line that is not UTF-8 is a malformed line, not the end of the file)."""
        with open(path, "rb") as stream:
            self.add_lines(stream, file=str(path))

    def _add(self, line: str | bytes) -> str | None:
        """Count one line's record; or say, without quoting it, why it is none."""
        try:
            record = json.loads(line)
        except UnicodeDecodeError:
            return "not UTF-8 text"
        except RecursionError:  # `[[[[…` thousands deep: no record nests like that
            return "not JSON (nested too deeply)"
        except ValueError as error:
            where = f" at column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
            return f"not JSON{where}"
        if not isinstance(record, dict):
            return f"a JSON {_kind(record)}, not an object (one record per line)"
        for name in _REQUIRED:
            if name not in record:
                return f"field {name!r} is missing"
        texts: dict[str, str] = {}
        for name in _TEXT_FIELDS:
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                return f"field {name!r} is a JSON {_kind(value)}; expected text"
            texts[name] = value or ""
        status = record["status"]
        if status not in STATUSES:
            return (
                f"field 'status' is not one of {', '.join(STATUSES)}"
                if isinstance(status, str)
                else f"field 'status' is a JSON {_kind(status)}; expected text"
            )
        moment = _utc(record["time"])
        if moment is None:
            return "field 'time' is not an ISO 8601 time with its offset (e.g. ...Z)"
        self.records += 1
        self.campaigns[texts["campaign"]] += 1
        self.statuses[status] += 1
        self.sources.setdefault(status, Counter())[texts["source"]] += 1
        self.reasons.setdefault(status, Counter())[texts["reason"]] += 1
        self.origins[texts["origin"]] += 1
        self.hours[f"{moment:%Y-%m-%dT%H}:00Z"] += 1
        if self.first is None or moment < self.first:
            self.first = moment
        if self.last is None or moment > self.last:
            self.last = moment
        return None

    def resolver_counts(self) -> dict[str, Any]:
        """The counts as `ResolverStats.to_dict()` names them (`resolved`, `refused`,
        `stored`, `stale`, `fallbacks`, `refusals`): what a resolver that wrote
        these records reports of itself."""
        ok_sources = self.sources.get("ok", Counter())
        fallbacks = Counter(self.reasons.get("ok", Counter()))
        del fallbacks[""]
        refusals: Counter[str] = Counter()
        for status in ("skip", "retry_later"):
            refusals.update(self.reasons.get(status, Counter()))
        return {
            "resolved": self.statuses["ok"],
            "refused": self.statuses["skip"] + self.statuses["retry_later"],
            # The resolver counts a source on the numbers it returned only.
            "stored": ok_sources["stored"],
            "stale": ok_sources["stale"],
            "fallbacks": dict(fallbacks),
            "refusals": dict(refusals),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every count, most frequent first (hours in time order)."""
        return {
            "records": self.records,
            "malformed": self.malformed,
            "problems": [
                {"file": problem.file, "line": problem.line, "problem": problem.problem}
                for problem in self.problems
            ],
            "first": _iso(self.first),
            "last": _iso(self.last),
            "campaigns": dict(self.campaigns.most_common()),
            "statuses": dict(self.statuses.most_common()),
            "sources": _by_status(self.sources),
            "reasons": _by_status(self.reasons),
            "hours": dict(sorted(self.hours.items())),
            "origins": dict(self.origins.most_common()),
        }


def _by_status(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {status: dict(counts[status].most_common()) for status in STATUSES if status in counts}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _utc(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # a time without its offset cannot be put in a UTC hour
    return moment.astimezone(UTC)


def summarize_audit(*paths: str | Path) -> AuditSummary:
    """The summary of the audit files at `paths` (a log and its rotated files, in
    any order: the counts do not depend on it)."""
    summary = AuditSummary()
    for path in paths:
        summary.add_file(path)
    return summary
