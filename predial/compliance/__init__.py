"""The compliance gate before a dial: calling windows in the callee's local time under
a versioned ruleset (`rules/us.toml`), do-not-call lists and sources, frequency caps,
and the audit record of every decision. See docs/compliance.md."""

from ._audit import AuditLog, AuditStats
from ._audit_summary import AuditSummary, summarize_audit
from ._caps import MemoryCapCounter, RedisCapCounter
from ._dnc_import import DncImportReport
from ._dnc_lists import DncEntry, DncList, DncLists, DncListStats
from ._dnc_sources import DncSourceAnswer, DncSources
from ._gate import Compliance
from ._windows import (
    LocationKeys,
    Rule,
    Ruleset,
    Verdict,
    ZoneSource,
    evaluate,
    load_ruleset,
)

__all__ = [
    "AuditLog",
    "AuditStats",
    "AuditSummary",
    "Compliance",
    "DncEntry",
    "DncImportReport",
    "DncList",
    "DncListStats",
    "DncLists",
    "DncSourceAnswer",
    "DncSources",
    "LocationKeys",
    "MemoryCapCounter",
    "RedisCapCounter",
    "Rule",
    "Ruleset",
    "Verdict",
    "ZoneSource",
    "evaluate",
    "load_ruleset",
    "summarize_audit",
]
