"""Retention: delete what has been kept longer than its asset's policy allows.

The policy is one file (``governance/retention.toml``, or ``ADP_RETENTION_CONFIG``), one entry per
asset that stores data, validated at load: a missing, unknown or malformed entry is an error
naming the asset and the key. Where each asset's data lives is :data:`STORAGE`:

* warehouse tables and the regional stores' tables: rows with ``_partition_date`` before the
  cutoff (``as_of - days``), deleted per database in one transaction; the event stream's tables
  (``stream.*``) by the day the record was received (``received_at``);
* a raw asset also owns its landing files (``<day>.<ext>`` before the cutoff), in every zone it
  lands in (each region's zone for the CRM's tables, ``sources/landing.LandingZones``);
* dataset versions and models: version directories whose day is before the cutoff, except the
  newest ``keep_latest``; each leaves a tombstone, so loading it later says when and why it went.

Then every DuckDB file that changed is compacted (``warehouse.compact``), so the deleted rows'
bytes are gone, the role databases are rebuilt from the warehouse (``role_databases.rebuild``), and
one audit record lists the counts per asset. A dry run computes the same
list, prints it, and changes nothing (no audit record either). Pure Python and DuckDB; the
Dagster job and ``adp retention`` call :func:`run`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError, shown
from ai_data_platform.governance import audit
from ai_data_platform.governance.stores import PERSONAL_TABLES, RegionalStores
from ai_data_platform.sources.contracts import SOURCE_TABLES
from ai_data_platform.sources.contracts import table as contract
from ai_data_platform.sources.landing import LandingZones

UNTIL_ERASURE = "erasure"
KEYS = ("days", "until", "keep_latest", "note")
MAX_DAYS = 36_500
MAX_KEEP_LATEST = 100_000
SHOWN_ERRORS = 5  # problems a config error lists in full
# Assets that must never expire by age, and why: deleting them would silently break something else.
MUST_STAY_UNTIL_ERASURE = {
    "raw/customers": "every customer's region is read from their CRM rows: without them their personal data would be routed to the default store",
    "staging/customers": "known-customer checks and the active-customer spine read every customer's CRM history",
    "identity/customer_pii": "identity is kept until the subject is erased",
}


@dataclass(frozen=True)
class Storage:
    """Where an asset's data lives: ``kind`` is table | regional | datasets | models."""

    kind: str
    name: str  # schema.table, or the dataset / model name
    landing_table: str | None = None  # raw assets: the source table whose landing files they own
    age_column: str = "_partition_date"  # tables: the day a row's age counts from


def _storage() -> dict[str, Storage]:
    from ai_data_platform.ml.training_sql import SPECS
    from ai_data_platform.streaming import warehouse_sink

    out: dict[str, Storage] = {}
    for t in SOURCE_TABLES:
        out[f"raw/{t.name}"] = Storage("table", f"raw.{t.name}", landing_table=t.name)
        out[f"staging/{t.name}"] = Storage("table", f"staging.{t.name}")
        out[f"quarantine/{t.name}"] = Storage("table", f"quarantine.{t.name}")
    for table in PERSONAL_TABLES:
        out["/".join(table.asset_path)] = Storage("regional", table.name)
    for table in ("marts.customer_360", "features.customer_daily", "features.transaction", "ml.churn_scores"):
        out[table.replace(".", "/")] = Storage("table", table)
    for table in (warehouse_sink.RECORDS, warehouse_sink.EVENTS_TABLE, warehouse_sink.QUARANTINE):
        out[table.replace(".", "/")] = Storage("table", table, age_column="received_at")  # the stream, by receipt day
    for name in SPECS:
        out[f"ml/{name}_training_set"] = Storage("datasets", name)
        out[f"ml/{name}_model"] = Storage("models", name)
    return out


STORAGE = _storage()


class RetentionConfigError(InputError):
    """The retention policy file is missing an entry, has an unknown one, or a malformed value."""


@dataclass(frozen=True)
class Policy:
    asset: str
    days: int | None  # None: until erasure
    keep_latest: int = 0
    note: str = ""

    def cutoff(self, as_of: date) -> date | None:
        """Data of a day before this is expired (None: never by age)."""
        if self.days is None:
            return None
        return date.fromordinal(max(as_of.toordinal() - self.days, date.min.toordinal()))

    def describe(self) -> str:
        rule = "until erasure" if self.days is None else f"{self.days} days"
        return rule + (f", keep the newest {self.keep_latest}" if self.keep_latest else "")


def load_policy(path: Path | None = None) -> dict[str, Policy]:
    """Read and validate the policy file; {asset: Policy} for every asset in :data:`STORAGE`."""
    path = path or settings.retention_config_path()
    data = _read_toml(path)
    unknown_top = sorted(set(data) - {"assets"})
    if unknown_top:
        raise RetentionConfigError(
            f"{path}: unknown top-level key(s) {shown(unknown_top)}; policies go under [assets.\"<asset key>\"]"
        )
    entries = data.get("assets", {})
    if not isinstance(entries, Mapping):
        raise RetentionConfigError(
            f"{path}: assets must be a table of [assets.\"<asset key>\"] entries, got {shown(entries)}"
        )
    errors = [f"[assets.{_quoted(a)}]: unknown asset{_suggest(a)}" for a in sorted(set(entries) - set(STORAGE))]
    policies = {}
    for asset in sorted(set(entries) & set(STORAGE)):
        try:
            policies[asset] = _policy(asset, entries[asset])
        except RetentionConfigError as exc:
            errors.append(str(exc))
    errors += [f"[assets.\"{a}\"]: missing: every asset storing data needs days = N or until = \"erasure\"" for a in sorted(set(STORAGE) - set(entries))]
    if errors:
        more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise RetentionConfigError(f"{path}: " + "; ".join(errors[:SHOWN_ERRORS]) + more)
    return policies


def _read_toml(path: Path) -> dict:
    """The policy file's TOML; a RetentionConfigError naming the file (and the variable that
    chose it) when it is missing, not a file, not UTF-8 or not TOML."""
    chosen = f" ({settings.RETENTION_CONFIG_VAR})" if os.environ.get(settings.RETENTION_CONFIG_VAR, "").strip() else ""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RetentionConfigError(f"retention policy file {path}{chosen} does not exist") from None
    except IsADirectoryError:
        raise RetentionConfigError(f"retention policy file {path}{chosen} is a directory, not a TOML file") from None
    except OSError as exc:
        raise RetentionConfigError(f"retention policy file {path}{chosen} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RetentionConfigError(f"{path}{chosen}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RetentionConfigError(f"{path}{chosen}: not valid TOML: {exc}") from None


def _quoted(key: str) -> str:
    """A TOML key as the file spells it, bounded (hostile keys can be long or unprintable)."""
    return f'"{key}"' if len(key) <= 60 and key.isprintable() and '"' not in key else shown(key)


def _suggest(asset: str) -> str:
    close = difflib.get_close_matches(asset, STORAGE, n=3)
    if close:
        return f" (did you mean {', '.join(close)}?)"
    return " (every key is an asset that stores data, e.g. raw/events)"


def _policy(asset: str, entry: object) -> Policy:
    where = f"[assets.\"{asset}\"]"
    if not isinstance(entry, Mapping):
        raise RetentionConfigError(f"{where} must be a table of keys, got {shown(entry)}")
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise RetentionConfigError(f"{where}: unknown key(s) {shown(unknown)}; allowed: {list(KEYS)}")
    if ("days" in entry) == ("until" in entry):
        raise RetentionConfigError(f"{where}: give exactly one of days = N or until = \"erasure\"")
    days = entry.get("days")
    if "days" in entry and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise RetentionConfigError(f"{where}.days must be a whole number of days >= 1, got {shown(days)}")
    if "days" in entry and days > MAX_DAYS:
        raise RetentionConfigError(f"{where}.days must be at most {MAX_DAYS} (100 years), got {days}")
    if "until" in entry and entry["until"] != UNTIL_ERASURE:
        raise RetentionConfigError(f"{where}.until must be \"erasure\", got {shown(entry['until'])}")
    keep = entry.get("keep_latest", 0)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= MAX_KEEP_LATEST:
        raise RetentionConfigError(
            f"{where}.keep_latest must be a whole number from 0 to {MAX_KEEP_LATEST}, got {shown(keep)}"
        )
    if keep and STORAGE[asset].kind not in ("datasets", "models"):
        raise RetentionConfigError(f"{where}.keep_latest applies to dataset versions and models only")
    if "days" in entry and asset in MUST_STAY_UNTIL_ERASURE:
        raise RetentionConfigError(f"{where}.days: {asset} must be until = \"erasure\": {MUST_STAY_UNTIL_ERASURE[asset]}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise RetentionConfigError(f"{where}.note must be text, got {shown(note)}")
    return Policy(asset, days if "days" in entry else None, keep, note)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Expired:
    """What one policy expires in one place."""

    asset: str
    place: str  # "warehouse raw.events", "EU store raw.support_tickets_personal", "landing/...", "datasets/churn/2026-01-01"
    count: int
    unit: str  # rows | file | version
    cutoff: date

    def describe(self) -> str:
        return f"{self.asset}: {self.place}: {self.count} {self.unit}(s) from before {self.cutoff}"


@dataclass
class RetentionReport:
    as_of: date
    dry_run: bool
    expired: list[Expired] = field(default_factory=list)
    compacted: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(e.count for e in self.expired)

    def counts_by_asset(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.expired:
            out[e.asset] = out.get(e.asset, 0) + e.count
        return out

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        head = f"retention as of {self.as_of}{' (dry run: nothing changed)' if self.dry_run else ''}: {verb} {self.total} item(s)"
        body = [f"  {e.describe()}" for e in self.expired]
        body += [f"  compacted {f}: {b} -> {a} bytes" for f, (b, a) in sorted(self.compacted.items())]
        return [head, *body]


def _version_day(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def _expired_versions(directory: Path, policy: Policy, cutoff: date) -> list[str]:
    if not directory.is_dir():
        return []
    versions = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".") and _version_day(p.name))
    protected = set(versions[-policy.keep_latest:]) if policy.keep_latest else set()
    return [v for v in versions if _version_day(v) < cutoff and v not in protected]


def _table_days(con, relation: str, cutoff: date, column: str = "_partition_date") -> int:
    return con.execute(f"SELECT count(*) FROM {relation} WHERE {column} < ?", [cutoff]).fetchone()[0]


def _expired_rows(con, aliases: Mapping[str, str], aged: Mapping[str, Policy], as_of: date) -> list[tuple[Expired, str]]:
    """(what expired, the relation holding it) for every table policy, in the warehouse and each store."""
    found = []
    for asset, policy in sorted(aged.items()):
        storage, cutoff = STORAGE[asset], policy.cutoff(as_of)
        if storage.kind == "table" and warehouse.table_exists(con, storage.name):
            n = _table_days(con, storage.name, cutoff, storage.age_column)
            if n:
                found.append((Expired(asset, f"warehouse {storage.name}", n, "row", cutoff), storage.name))
        elif storage.kind == "regional":
            for region, a in aliases.items():
                n = _table_days(con, f"{a}.{storage.name}", cutoff)
                if n:
                    found.append((Expired(asset, f"{region} store {storage.name}", n, "row", cutoff), f"{a}.{storage.name}"))
    return found


def _delete_rows(con, aliases: Mapping[str, str], found: list[tuple[Expired, str]], paths: settings.Paths, stores: RegionalStores) -> set[Path]:
    """Delete the expired rows, one transaction per database; returns the files that changed."""
    changed = set()
    databases = {paths.warehouse: [(e, rel) for e, rel in found if e.place.startswith("warehouse ")]}
    databases |= {stores.paths[region]: [(e, rel) for e, rel in found if rel.startswith(f"{a}.")] for region, a in aliases.items()}
    for path, rows in databases.items():
        if not rows:
            continue
        with warehouse.transaction(con):
            for e, rel in rows:
                con.execute(f"DELETE FROM {rel} WHERE {STORAGE[e.asset].age_column} < ?", [e.cutoff])
        changed.add(path)
    return changed


def _expire_files(asset: str, policy: Policy, as_of: date, paths: settings.Paths, dry_run: bool) -> list[Expired]:
    """A raw asset's landing files, or a dataset's / model's version directories, that expired
    (deleted unless ``dry_run``; versions leave a tombstone)."""
    from ai_data_platform.ml import datasets

    storage, cutoff = STORAGE[asset], policy.cutoff(as_of)
    expired = []
    if storage.landing_table:
        zones = LandingZones.from_settings(paths)
        for path in zones.landed(contract(storage.landing_table)):
            day = _version_day(path.stem)
            if day and day < cutoff:
                expired.append(Expired(asset, zones.name(path), 1, "file", cutoff))
                if not dry_run:
                    path.unlink()
    elif storage.kind in ("datasets", "models"):
        root = paths.root / storage.kind  # $ADP_DATA_DIR/datasets, $ADP_DATA_DIR/models
        reason = f"retention: {asset} keeps {policy.describe()}, as of {as_of}"
        for version in _expired_versions(root / storage.name, policy, cutoff):
            expired.append(Expired(asset, f"{root.name}/{storage.name}/{version}", 1, "version", cutoff))
            if dry_run:
                continue
            if storage.kind == "datasets":
                datasets.delete_version(storage.name, version, by="retention", reason=reason, root=root)
            else:
                tombstone = {"name": storage.name, "version": version, "by": "retention", "reason": reason,
                             "deleted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                datasets.retire_directory(root / storage.name / version, tombstone)
    return expired


def run(
    policies: Mapping[str, Policy],
    as_of: date,
    *,
    dry_run: bool = False,
    paths: settings.Paths | None = None,
    stores: RegionalStores | None = None,
    actor: str | None = None,
    run_id: str | None = None,
    anchor: audit.Anchor | None = None,
) -> RetentionReport:
    """Apply ``policies`` as of ``as_of`` (see the module docstring); the audit record is anchored
    with ``anchor`` (default: the Dagster storage of this data directory)."""
    paths = paths or settings.paths()
    stores = stores or RegionalStores.from_settings(paths)
    report = RetentionReport(as_of, dry_run)
    aged = {a: p for a, p in policies.items() if p.days is not None}
    changed: set[Path] = set()
    if not dry_run:  # refuse before anything changes if the audit trail cannot record it
        audit.anchor_pending(directory=paths.root / "audit", anchor=anchor)

    if dry_run and not paths.warehouse.exists():
        con = warehouse.connect(":memory:")  # nothing stored yet: a dry run must not create the file
    else:
        con = warehouse.connect(paths.warehouse, read_only=dry_run)
    try:
        with stores.attached(con, read_only=dry_run) as aliases:
            found = _expired_rows(con, aliases, aged, as_of)
            if not dry_run:
                changed |= _delete_rows(con, aliases, found, paths, stores)
            report.expired += [e for e, _ in found]
    finally:
        con.close()

    for asset, policy in sorted(aged.items()):
        report.expired += _expire_files(asset, policy, as_of, paths, dry_run)

    for path in sorted(changed):
        report.compacted[path.name if path.parent == paths.root else str(path)] = warehouse.compact(path)
    if paths.warehouse in changed:  # the role databases hold copies of warehouse rows
        from ai_data_platform.governance import role_databases

        role_databases.rebuild(paths)
    if not dry_run:
        audit.append(
            "retention",
            directory=paths.root / "audit",
            anchor=anchor,
            actor=actor,
            run_id=run_id,
            row_counts=report.counts_by_asset(),
            status="applied",
            details={
                "as_of": as_of.isoformat(),
                "expired": [e.describe() for e in report.expired],
                "compacted": {f: {"bytes_before": b, "bytes_after": a} for f, (b, a) in report.compacted.items()},
            },
        )
    return report
