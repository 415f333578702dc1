"""Compliance gate at registry scale, each figure beside its reference in the same run.

    python benchmarks/compliance.py                     # 50 million numbers (~5 min, ~5 GB)
    python benchmarks/compliance.py --numbers 200000    # a smoke check

Do-not-call lists (`predial.compliance.DncLists`):
1. import: synthetic FTC full files (one per area code, one 10-digit number per
   line) imported by `DncList.import_files` in a child process: seconds and peak RSS
   (`resource.getrusage` in the child, so the generator's memory is not counted).
2. lookup: `DncLists.first_hit(number, ["national"])` vs the same call answered
   from a Python `set` of every number (half the probes listed, half not), best of
   several interleaved rounds (target <= 3x).
3. bytes per stored number: the list file's size over its numbers, vs the set's
   RSS growth per number (target <= 8).
4. the gate's cost on a cache-hit resolve: `gate_cost` (with and without an audit file).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from predial import AdapterRegister, Campaign, Lead, Resolver, hookimpl
from predial.compliance import AuditLog, Compliance, DncList, DncLists
from predial.compliance._dnc_store import split_nanp

LIST = "national"


def write_ftc_files(directory: Path, numbers: int, area_codes: int, seed: int = 1) -> list[Path]:
    """`numbers` distinct numbers over `area_codes` area codes (201, 202, ...), one
    file per area code as the FTC ships them."""
    rng = random.Random(seed)
    files = []
    per, extra = divmod(numbers, area_codes)
    for index in range(area_codes):
        code = 201 + index
        count = per + (index < extra)
        subscribers = rng.sample(range(2_000_000, 10_000_000), count)
        path = directory / f"{code}.txt"
        prefix = b"%d" % code
        path.write_bytes(b"".join(b"%s%07d\n" % (prefix, s) for s in subscribers))
        files.append(path)
    return files


def _import_child(directory: str, files: Sequence[str]) -> None:
    started = time.perf_counter()
    report = DncList(directory, LIST).import_files(list(files))
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_bytes": peak_kib * 1024, "total": report.total}))


def measure_import(directory: Path, files: list[Path]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--_import", str(directory), *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


class SetLists:
    """`DncLists.first_hit` answered from a Python set of ints: the reference."""

    def __init__(self, numbers: set[int]) -> None:
        self.numbers = numbers

    def first_hit(self, e164: str, names: Sequence[str]) -> str | None:
        parts = split_nanp(e164) if isinstance(e164, str) else None
        if parts is None:
            return None
        for name in names:
            if parts[0] * 10_000_000 + parts[1] in self.numbers:
                return name
        return None


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _time(lists: DncLists | SetLists, probes: list[str]) -> float:
    """Seconds per lookup over `probes`."""
    names = [LIST]
    first_hit = lists.first_hit
    started = time.perf_counter()
    for number in probes:
        first_hit(number, names)
    return (time.perf_counter() - started) / len(probes)


def measure_lookups(directory: Path, lookups: int, rounds: int = 5) -> dict[str, float]:
    lists = DncLists(directory)
    lists.check_names([LIST])
    store = lists._stores[LIST]
    counts = store.counts()
    rng = random.Random(2)
    codes = list(counts)
    listed = []
    for _ in range(lookups // 2):
        code = rng.choice(codes)
        numbers = store.numbers(code)
        listed.append(f"+1{code:03d}{numbers[rng.randrange(len(numbers))]:07d}")
    unlisted = [f"+1{rng.choice(codes):03d}{rng.randrange(10_000_000):07d}" for _ in listed]
    probes = listed + unlisted
    rng.shuffle(probes)

    before = _rss()
    reference: set[int] = set()
    for code in codes:
        base = code * 10_000_000
        reference.update(base + subscriber for subscriber in store.numbers(code))
    set_bytes = (_rss() - before) / len(reference)
    by_set = SetLists(reference)
    for number in listed[:1000]:  # both answer alike
        assert lists.first_hit(number, [LIST]) == by_set.first_hit(number, [LIST]) == LIST

    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(_time(lists, probes))
        theirs.append(_time(by_set, probes))
    return {
        "store_us": min(ours) * 1e6,
        "set_us": min(theirs) * 1e6,
        "set_bytes_per_number": set_bytes,
        "numbers": store.count,
        "file_bytes": store.size,
    }


class _FixedAdapter:
    """An adapter answering every id with the number its id encodes (no I/O)."""

    name = "bench-fixed"

    async def fetch_phone(self, external_id: str) -> str:
        return external_id


class _Plugin:
    @hookimpl
    def register_adapters(self, register: AdapterRegister) -> None:
        register(_FixedAdapter)


#: Wednesday 15:00 UTC: 10:00 in Washington DC, inside every window that applies.
_INSIDE = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def gate_cost(directory: Path, leads: int = 2_000, rounds: int = 7) -> list[tuple[str, str]]:
    """The compliance gate's cost on a cache-hit resolve (target <= 2x): the same
    leads resolved from the cache by a campaign without `compliance` and by one with
    `compliance="us"` checking the imported national list (the full registry-scale
    file) — the calling window in the callee's zones, the list lookup — with verdicts
    memoised per exchange and minute as a dialer meets them, and with none memoised
    (every call a new minute), and by one that also writes every decision to an
    audit file. Random DC numbers over ~800 exchanges (no frequency cap), none on the
    list, best of interleaved rounds."""
    lists = DncLists(directory)
    rng = random.Random(3)
    numbers: list[str] = []
    while len(numbers) < leads:
        number = f"+1202{rng.randrange(2_000_000, 10_000_000):07d}"
        if lists.first_hit(number, [LIST]) is None:
            numbers.append(number)
    gated = Compliance(rules="us", dnc_lists=(LIST,))
    campaigns = [
        Campaign("plain", "bench-fixed", default_region="US"),
        Campaign("gated", "bench-fixed", default_region="US", compliance=gated),
        Campaign("windows", "bench-fixed", default_region="US", compliance="us"),
        Campaign("cold", "bench-fixed", default_region="US", compliance=gated),
        Campaign("audited", "bench-fixed", default_region="US", compliance=gated),
    ]
    minutes = itertools.cycle([_INSIDE, _INSIDE + timedelta(minutes=1)])
    started = time.perf_counter()

    def running() -> datetime:
        """The time of day moving on from _INSIDE as the run does: it costs what
        `datetime.now(UTC)` costs, or a little more, and crosses minutes as a real
        dialer's clock would."""
        return _INSIDE + timedelta(seconds=time.perf_counter() - started)

    audit_file = directory / "audit.jsonl"

    async def run() -> dict[str, float]:
        audit = AuditLog(audit_file, key="benchmark-key-0123456789", max_queue=1_000_000)
        resolvers = {
            "plain": Resolver(campaigns[:1], plugins=[_Plugin()], load_entrypoints=False),
            "gated": Resolver(
                campaigns[1:2],
                plugins=[_Plugin()],
                load_entrypoints=False,
                dnc_dir=directory,
                wall_clock=running,
            ),
            "windows": Resolver(
                campaigns[2:3],
                plugins=[_Plugin()],
                load_entrypoints=False,
                wall_clock=running,
            ),
            # Every call in another minute than the last: no verdict is memoised.
            "cold": Resolver(
                campaigns[3:4],
                plugins=[_Plugin()],
                load_entrypoints=False,
                dnc_dir=directory,
                wall_clock=lambda: next(minutes),
            ),
            "audited": Resolver(
                campaigns[4:],
                plugins=[_Plugin()],
                load_entrypoints=False,
                dnc_dir=directory,
                wall_clock=running,
                audit=audit,
            ),
        }
        batches = {
            name: [Lead(campaign_id=name, external_id=number) for number in numbers]
            for name in resolvers
        }
        for name, resolver in resolvers.items():  # fill the caches: every later one a hit
            for lead in batches[name]:
                await resolver.resolve(lead)
        best = dict.fromkeys(resolvers, float("inf"))
        for _ in range(rounds):
            for name, resolver in resolvers.items():
                resolve = resolver.resolve
                started = time.perf_counter()
                for lead in batches[name]:
                    await resolve(lead)
                best[name] = min(best[name], (time.perf_counter() - started) / leads)
        for name, resolver in resolvers.items():
            assert resolver.stats().hits >= leads * rounds, name
            await resolver.close()
        audit.close()
        return best

    best = asyncio.run(run())
    plain, gated_us, audited = best["plain"] * 1e6, best["gated"] * 1e6, best["audited"] * 1e6
    cold, windows = best["cold"] * 1e6, best["windows"] * 1e6
    return [
        (
            "gate on a cache hit",
            f"{gated_us:.1f} us vs {plain:.1f} us without compliance = "
            f"{gated_us / plain:.2f}x (target <= 2x)",
        ),
        (
            "gate without lists (calling window only) on a cache hit",
            f"{windows:.1f} us = {windows / plain:.2f}x",
        ),
        (
            "gate on a cache hit, no verdict memoised",
            f"{cold:.1f} us = {cold / plain:.2f}x (every call in a new minute)",
        ),
        (
            "gate + audit file on a cache hit",
            f"{audited:.1f} us = {audited / plain:.2f}x the plain cache hit",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=50_000_000, help="numbers to import")
    parser.add_argument("--area-codes", type=int, default=500, help="area codes to spread over")
    parser.add_argument("--lookups", type=int, default=200_000, help="probes per round")
    parser.add_argument("--_import", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._import:
        _import_child(args._import[0], args._import[1:])
        return
    with tempfile.TemporaryDirectory(prefix="predial-dnc-bench-") as tmp:
        root = Path(tmp)
        (root / "ftc").mkdir()
        started = time.perf_counter()
        files = write_ftc_files(root / "ftc", args.numbers, min(args.area_codes, 799))
        print(f"generated {args.numbers:,} numbers in {time.perf_counter() - started:.1f} s")
        imported = measure_import(root / "lists", files)
        for path in files:
            path.unlink()  # the page cache and disk back for the lookups
        looked = measure_lookups(root / "lists", args.lookups)
        gate_rows = gate_cost(root / "lists")
    per_number = looked["file_bytes"] / looked["numbers"]
    ratio = looked["store_us"] / looked["set_us"]
    print(
        f"import: {imported['total']:,.0f} numbers in {imported['seconds']:.1f} s "
        f"({imported['total'] / imported['seconds']:,.0f}/s), "
        f"peak RSS {imported['peak_bytes'] / 2**20:,.0f} MiB"
    )
    print(
        f"lookup: first_hit {looked['store_us']:.2f} us vs set {looked['set_us']:.2f} us "
        f"= {ratio:.2f}x (target <= 3x)"
    )
    print(
        f"memory: {per_number:.2f} bytes/number in the list file vs "
        f"{looked['set_bytes_per_number']:.1f} for the set "
        f"= {per_number / looked['set_bytes_per_number']:.3f}x (target <= 8 bytes)"
    )
    for label, figure in gate_rows:
        print(f"{label}: {figure}")


if __name__ == "__main__":
    main()
