"""``adp erase`` and ``adp retention``: the data lifecycle from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from ai_data_platform.cli_args import day, text
from ai_data_platform.errors import InputError

ERASE_EPILOG = """exit codes:
  0  erased, or nothing left to erase (already erased): verified by searching every store
  1  verification failed: traces remain (each is listed: file, table, column, count)
  2  bad usage (no reason, a reason holding the subject's personal data, a bad subject reference)
  3  unknown customer id: nothing about it is held; nothing erased, nothing recorded as suppressed
"""


_reason = text("a reason such as a ticket number (printable, at most 500 characters)", limit=500, echo=False)


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
    stream = sys.stdout if result.exit_code == erasure.EXIT_ERASED else sys.stderr
    print("\n".join(result.report()), file=stream)
    return result.exit_code


def cmd_retention(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.governance import retention

    today = datetime.now(timezone.utc).date()
    as_of = args.as_of or today
    if as_of > today and not args.dry_run:
        raise InputError(f"--as-of {as_of} is after today ({today}): only a --dry-run may count ages from a future day")
    policy = retention.load_policy()  # a RetentionConfigError names the file, the asset and the key
    report = retention.run(policy, as_of, dry_run=args.dry_run, paths=settings.paths())
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
    e.add_argument("--customer-id", required=True, type=text("a customer id (printable, at most 200 characters)", echo=False),
                   help="the CRM customer id")
    e.add_argument("--reason", type=_reason,
                   help="why (a ticket number): kept in the audit log, so never personal data")
    e.add_argument(
        "--print-ref", action="store_true",
        help="only print the subject reference (subject:<HMAC>) to pass to the erase_customer Dagster job",
    )
    e.set_defaults(func=cmd_erase)

    r = subparsers.add_parser("retention", help="delete what the retention policy (governance/retention.toml) says has expired")
    r.add_argument("--dry-run", action="store_true", help="print exactly what would be deleted and change nothing")
    r.add_argument("--as-of", type=day, help="the day ages are counted from (default: today, UTC)")
    r.set_defaults(func=cmd_retention)
