"""The compliance gate before a dial (issue 15, work in progress): calling windows in
the callee's local time under a versioned ruleset (`rules/us.toml`)."""

from ._windows import Rule, Ruleset, Verdict, ZoneSource, evaluate, load_ruleset

__all__ = ["Rule", "Ruleset", "Verdict", "ZoneSource", "evaluate", "load_ruleset"]
