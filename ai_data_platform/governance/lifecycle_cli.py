"""``adp erase`` and ``adp retention``: the data lifecycle from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from ai_data_platform.cli_args import day, text
from ai_data_platform.errors import InputError

ERASE_EPILOG = """The subject is one known customer: by --customer-id, or by the --email or --phone of
exactly one customer's CRM record.

exit codes:
  0  erased, or nothing left to erase (already erased): verified by searching every store
  1  verification failed: traces remain (each is listed: file, table, column, count); or a step
     failed midway (the audit record names it; erasing again finishes the job)
  2  bad usage (no reason, a reason holding the subject's personal data, a bad subject reference)
  3  not one known customer (no customer record has the id; no customer or several have the email
     or phone): nothing erased, nothing recorded as suppressed; the audit record says nothing_found
  4  the audit trail cannot record it: its log does not match the head recorded in Dagster, or
     Dagster's storage is out of reach (refused before anything changes; if the storage went away
     during the erasure, the record is written but not anchored); see `adp audit verify`
"""


_reason = text("a reason such as a ticket number (printable, at most 500 characters)", limit=500, echo=False)


def cmd_erase(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.governance import audit, erasure

    selector = next(name for name in erasure.SELECTORS if getattr(args, name) is not None)
    value = getattr(args, selector)
    if not value.strip():
        raise InputError(f"--{selector.replace('_', '-')} is empty: name the subject (any other value no customer "
                         "record holds is refused with exit code 3)")
    if args.print_ref:
        return _print_ref(selector, value)
    if not args.reason:
        print("adp erase: --reason is required (e.g. the request's ticket number)", file=sys.stderr)
        return 2
    try:
        if selector == "customer_id":
            result = erasure.erase(value, args.reason, paths=settings.paths())
        else:
            result = erasure.erase_matching(selector, value, args.reason, paths=settings.paths())
    except erasure.ErasureFailed as exc:
        print(f"adp erase: {exc}", file=sys.stderr)
        return erasure.EXIT_TRACES_REMAIN
    except audit.AuditError as exc:
        print(f"adp erase: audit trail: {exc}", file=sys.stderr)
        return 4
    if result.exit_code == erasure.EXIT_UNKNOWN_SUBJECT:
        print(f"adp erase: {result.message()}", file=sys.stderr)
        return result.exit_code
    stream = sys.stdout if result.exit_code == erasure.EXIT_ERASED else sys.stderr
    print("\n".join(result.report()), file=stream)
    return result.exit_code


def _print_ref(selector: str, value: str) -> int:
    """Print the subject reference of a customer id, or of the one customer an email or phone names."""
    from ai_data_platform import settings
    from ai_data_platform.errors import InputError
    from ai_data_platform.governance import audit, erasure
    from ai_data_platform.governance.stores import PersonalData

    if selector == "customer_id":
        if not value.strip():
            raise InputError("a customer id is required")
        print("subject:" + erasure.subject_hash(value.strip()))
        return 0
    paths = settings.paths()
    matches = sorted(erasure.customers_matching(selector, value, paths, PersonalData.from_settings(paths)))
    if len(matches) != 1:
        result = erasure.ErasureResult(None, "ambiguous_subject" if matches else "unknown_subject", {}, [], {}, None, 0,
                                       selector=selector, matches=len(matches))
        print(f"adp erase: {result.message()}", file=sys.stderr)
        return erasure.EXIT_UNKNOWN_SUBJECT
    print(audit.subject_ref(matches[0]))
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from ai_data_platform import settings
    from ai_data_platform.governance import audit, retention

    today = datetime.now(timezone.utc).date()
    as_of = args.as_of or today
    if as_of > today and not args.dry_run:
        raise InputError(f"--as-of {as_of} is after today ({today}): only a --dry-run may count ages from a future day")
    policy = retention.load_policy()  # a RetentionConfigError names the file, the asset and the key
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
    subject = e.add_mutually_exclusive_group(required=True)
    # Any text: the erasure judges it (a value no customer record holds is refused with exit 3 and
    # an audit record, whatever its length or characters).
    subject.add_argument("--customer-id", help="the CRM customer id")
    subject.add_argument("--email", help="the email of exactly one customer's CRM record")
    subject.add_argument("--phone", help="the phone number of exactly one customer's CRM record")
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
