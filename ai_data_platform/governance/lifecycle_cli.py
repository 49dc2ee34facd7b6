"""``adp erase`` and ``adp retention``: the data lifecycle from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timezone

ERASE_EPILOG = """exit codes:
  0  erased, or nothing left to erase (already erased): verified by searching every store
  1  verification failed: traces remain (each is listed: file, table, column, count)
  2  bad usage (no reason, a reason holding the subject's personal data, a bad subject reference)
  3  unknown customer id: nothing about it is held; nothing erased, nothing recorded as suppressed
  4  the audit trail cannot record it: its log does not match the head recorded in Dagster, or
     Dagster's storage is out of reach (refused before anything changes; if the storage went away
     during the erasure, the record is written but not anchored); see `adp audit verify`
"""


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def cmd_erase(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.governance import audit, erasure

    if args.print_ref:
        print(audit.subject_ref(args.customer_id.strip()))
        return 0
    if not args.reason:
        print("adp erase: --reason is required (e.g. the request's ticket number)", file=sys.stderr)
        return 2
    try:
        result = erasure.erase(args.customer_id, args.reason, paths=settings.paths())
    except ValueError as exc:
        print(f"adp erase: {exc}", file=sys.stderr)
        return 2
    except audit.AuditError as exc:
        print(f"adp erase: audit trail: {exc}", file=sys.stderr)
        return 4
    stream = sys.stdout if result.exit_code == erasure.EXIT_ERASED else sys.stderr
    print("\n".join(result.report()), file=stream)
    return result.exit_code


def cmd_retention(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.governance import audit, retention

    try:
        policy = retention.load_policy()
    except retention.RetentionConfigError as exc:
        print(f"adp retention: {exc}", file=sys.stderr)
        return 2
    as_of = args.as_of or datetime.now(timezone.utc).date()
    try:
        report = retention.run(policy, as_of, dry_run=args.dry_run, paths=settings.paths())
    except audit.AuditError as exc:
        print(f"adp retention: audit trail: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


def add_lifecycle_parser(subparsers) -> None:
    """Register ``adp erase`` and ``adp retention``."""
    e = subparsers.add_parser(
        "erase",
        help="erase a data subject everywhere and verify it by searching every store (right to erasure)",
        epilog=ERASE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--customer-id", required=True, help="the CRM customer id")
    e.add_argument("--reason", help="why (a ticket number): kept in the audit log, so never personal data")
    e.add_argument(
        "--print-ref", action="store_true",
        help="only print the subject reference (subject:<HMAC>) to pass to the erase_customer Dagster job",
    )
    e.set_defaults(func=cmd_erase)

    r = subparsers.add_parser("retention", help="delete what the retention policy (governance/retention.toml) says has expired")
    r.add_argument("--dry-run", action="store_true", help="print exactly what would be deleted and change nothing")
    r.add_argument("--as-of", type=_day, help="the day ages are counted from (default: today, UTC)")
    r.set_defaults(func=cmd_retention)
