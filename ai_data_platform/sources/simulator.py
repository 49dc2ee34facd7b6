"""Deterministic source simulator: a subscription SaaS's CRM, billing and product data, with dirt.

``generate`` simulates ``customers`` customers over the ``days`` days ending at ``end`` and
writes the landing files of every source table for each day, exactly to the contracts in
``contracts.py``, plus ``manifest.json`` (in the shared zone) recording how many rows and how much
of each kind of dirt every file holds, and its region. Same arguments, same bytes: every random
draw comes from a stream seeded by ``seed`` (see ``simulator_clock.stream``) and every writer is
byte-stable.

**Exports per region.** The CRM exports each region's records to that region's landing zone
(``sources/landing.LandingZones``): a customer's rows to their region's ``customers`` file, a
ticket to the file of the region of the customer it comes from, a record from an unknown customer
(the ``unknown_customer`` dirt, ``corrupt``) to the EU zone, the strictest regime, and a malformed
line to the file of the record it was cut from. Every region gets its file every day (header only
when it has no rows). Billing and behavioral exports hold no personal data: one shared file a day.

The business behind the data (see the ``simulator_*`` modules): customers in EU/US/APAC sign
up over two years, pay a monthly subscription by card, use the product (events), open support
tickets, sometimes drift away and cancel (churn rises with falling activity, failed payments,
complaints and a cheap plan) and sometimes have their card used fraudulently (new device,
foreign IP, bursts, big amounts), which leads to chargebacks.

No Dagster here: this module is plain Python so tests, benchmarks and the CLI can call it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from ai_data_platform.errors import InputError, shown
from ai_data_platform.private_files import write_private
from ai_data_platform.sources.contracts import DIRT_KINDS, SOURCE_TABLES, SourceTable, table
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator_clock import Window, stream
from ai_data_platform.sources.simulator_days import simulate
from ai_data_platform.sources.simulator_dirt import DirtInjector, FileRows
from ai_data_platform.sources.simulator_ids import MAX_CUSTOMERS
from ai_data_platform.sources.simulator_world import HISTORY_DAYS
from ai_data_platform.sources.simulator_writers import csv_header, write_lines, write_parquet

GENERATOR_VERSION = "1.3.0"  # 1.1: events carry received_at; 1.2: 3% refunds; 1.3: CRM exports per region
MANIFEST_NAME = "manifest.json"
MAX_DAYS = 3660  # ten years of daily exports
_EARLIEST_SIGNUP = date(2000, 1, 2)


def default_end() -> date:
    """Yesterday in UTC: the last complete day, the natural end of a simulated window."""
    return (datetime.now(timezone.utc) - timedelta(days=1)).date()


def generate(
    zones: LandingZones,
    *,
    customers: int,
    days: int,
    end: date,
    seed: int,
    dirty_rate: float = 0.005,
    corrupt: Sequence[tuple[str, date, float]] = (),
) -> dict:
    """Write every source table's landing files for each day in ``[end - days + 1, end]``.

    Args:
        zones: the landing zones receiving ``<source>/<table>/<YYYY-MM-DD>.<ext>`` files (see the
            module docstring), and ``manifest.json`` in the shared zone. Existing landing files
            of the source tables are removed from every zone first.
        customers: size of the customer base (1 .. 7,999,999).
        days: number of days in the window (1 .. ``MAX_DAYS``).
        end: last day of the window.
        seed: seed of every random draw; same arguments give byte-identical files.
        dirty_rate: per file and per dirt kind, the expected share of the clean row count
            added as extra dirty rows (see ``simulator_dirt``).
        corrupt: ``(table_name, day, rate)`` entries: on that day's file, ``rate`` of the clean
            rows get a customer reference no CRM row has (counted as ``unknown_customer``).

    Returns:
        The manifest, also written to ``manifest.json`` in the shared zone. ``files`` is keyed by
        file name (``LandingZones.name``: relative to the data directory), each entry with its
        table, date, region (``None`` in the shared zone), rows and dirt.
    """
    if not isinstance(zones, LandingZones):
        raise TypeError(f"zones must be a sources.landing.LandingZones (LandingZones.from_settings(paths)), got {zones!r}")
    corrupt_rates = check_arguments(customers, days, end, dirty_rate, corrupt)
    window = Window.ending(end, days)
    remove_landing_files(zones)
    injector = DirtInjector(dirty_rate)
    files: dict[str, dict] = {}
    for t, clean_tables, regions in simulate(customers, window, seed):
        day = window.day(t)
        for index, contract in enumerate(SOURCE_TABLES):
            rate = corrupt_rates.get((contract.name, day), 0.0)
            content = injector.file_rows(
                contract, clean_tables[contract.name], stream(seed, "dirt", index, t), rate, regions.get(contract.name)
            )
            for region, part in content.by_region():
                path = zones.file(contract, day, region)
                _write(contract, path, part)
                files[zones.name(path)] = {
                    "table": contract.name,
                    "date": day.isoformat(),
                    "region": region,
                    "rows": part.rows,
                    "dirt": dict(part.dirt),
                }
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "args": {
            "customers": customers,
            "days": days,
            "end": end.isoformat(),
            "seed": seed,
            "dirty_rate": dirty_rate,
            "corrupt": [[name, day.isoformat(), rate] for (name, day), rate in sorted(corrupt_rates.items())],
        },
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "files": files,
        "totals": _totals(files),
    }
    write_private(zones.shared / MANIFEST_NAME, (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode())
    return manifest


def remove_landing_files(zones: LandingZones) -> None:
    """Delete the source tables' landing files from every zone (also a table's files in a zone it
    no longer lands in, e.g. CRM exports in the shared zone from before exports were regional)
    and the manifest; nothing else."""
    for root in zones.roots():
        for contract in SOURCE_TABLES:
            directory = contract.landing_dir(root)
            if directory.is_dir():
                for path in directory.glob(f"*.{contract.extension}"):
                    if path.is_file() or path.is_symlink():
                        path.unlink()
    manifest = zones.shared / MANIFEST_NAME
    if manifest.is_file():
        manifest.unlink()


def _write(contract: SourceTable, path: Path, content: FileRows) -> None:
    if contract.file_format == "parquet":
        write_parquet(path, content.table)
    elif contract.file_format == "csv":
        write_lines(path, content.lines, header=csv_header(contract))
    else:
        write_lines(path, content.lines)


def _totals(files: dict[str, dict]) -> dict[str, dict]:
    totals = {t.name: {"rows": 0, "dirt": {kind: 0 for kind in DIRT_KINDS}} for t in SOURCE_TABLES}
    for entry in files.values():
        total = totals[entry["table"]]
        total["rows"] += entry["rows"]
        for kind, count in entry["dirt"].items():
            total["dirt"][kind] += count
    return totals


def check_arguments(
    customers: int, days: int, end: date, dirty_rate: float, corrupt: Sequence[tuple[str, date, float]] = ()
) -> dict[tuple[str, date], float]:
    """Judge ``generate``'s arguments without writing anything: an InputError (a ValueError)
    names the first bad one and its rule. Returns the corruption plan {(table, day): rate}."""
    _check_arguments(customers, days, end, dirty_rate)
    return _corruption_plan(corrupt, Window.ending(end, days))


def _check_arguments(customers: int, days: int, end: date, dirty_rate: float) -> None:
    if not isinstance(customers, int) or isinstance(customers, bool) or not 1 <= customers <= MAX_CUSTOMERS:
        raise InputError(f"customers must be an int in [1, {MAX_CUSTOMERS}], got {shown(customers)}")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InputError(f"days must be a positive int of at most {MAX_DAYS}, got {shown(days)}")
    if not isinstance(end, date) or isinstance(end, datetime):
        raise TypeError(f"end must be a datetime.date, got {end!r}")
    if not isinstance(dirty_rate, (int, float)) or not 0.0 <= dirty_rate < 1.0:
        raise InputError(f"dirty_rate must lie in [0, 1), got {shown(dirty_rate)}")
    history = max(HISTORY_DAYS, days + 60)
    earliest_end = date.fromordinal(_EARLIEST_SIGNUP.toordinal() + history - 1)
    if end < earliest_end:
        raise InputError(
            f"end {end} leaves no room for {history} days of history after 2000-01-01 "
            f"(the earliest end is {earliest_end})"
        )


def _corruption_plan(corrupt: Sequence[tuple[str, date, float]], window: Window) -> dict[tuple[str, date], float]:
    plan: dict[tuple[str, date], float] = {}
    for entry in corrupt:
        name, day, rate = entry
        if name not in {t.name for t in SOURCE_TABLES}:
            known = ", ".join(t.name for t in SOURCE_TABLES)
            raise InputError(f"corrupt: unknown source table {shown(name)}; known: {known}")
        contract = table(name)
        day = date.fromisoformat(day) if isinstance(day, str) else day
        if contract.customer_ref is None:
            raise InputError(f"corrupt: {name} has no customer reference to corrupt")
        if not window.start <= day <= window.end:
            raise InputError(f"corrupt day {day} lies outside the window {window.start}..{window.end}")
        if not 0.0 <= float(rate) <= 1.0:
            raise InputError(f"corrupt rate must lie in [0, 1], got {shown(rate)}")
        if (name, day) in plan:
            raise InputError(f"corrupt: {name} on {day} is listed twice")
        plan[(name, day)] = float(rate)
    return plan


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ai_data_platform.sources.simulator DATA_DIR [--customers N ...]``: writes to the
    landing zones of that data directory (``DATA_DIR/landing``, and each region's zone as
    ``settings.region_landing_paths`` configures it)."""
    from ai_data_platform import settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end", type=date.fromisoformat, default=default_end())
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dirty-rate", type=float, default=0.005)
    args = parser.parse_args(argv)
    manifest = generate(
        LandingZones.from_settings(settings.Paths(args.data_dir.expanduser().resolve())),
        customers=args.customers,
        days=args.days,
        end=args.end,
        seed=args.seed,
        dirty_rate=args.dirty_rate,
    )
    for name, total in manifest["totals"].items():
        print(f"{name:16s} {total['rows']:>10d} rows  dirt {total['dirt']}")


if __name__ == "__main__":
    main()
