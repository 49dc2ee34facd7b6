"""The compliance subcommands of ``adp``, registered by :func:`add_governance_parsers`.

- ``adp audit verify`` checks the hash chain, every record's MAC and that the newest record is the
  head recorded in Dagster at the last append; it exits 1 naming the first problem. ``adp audit show``
  prints the newest records (filtered by asset and action) oldest first, as a table or ``--json``.
- ``adp lineage COLUMN_OR_ASSET`` prints where a column (or asset) comes from, back to the
  landing files, as a tree or ``--json``.
- ``adp query --role ROLE "SQL"`` runs one SELECT in the role's sandbox, over the role's database
  only (:mod:`ai_data_platform.governance.access`); a refusal exits 3 naming role, relation and
  what the role may read, any other error exits 2; either is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from ai_data_platform.cli_args import asset_key, text, whole
from ai_data_platform.errors import shown
from ai_data_platform.governance import audit

COLUMNS = ("seq", "ts", "action", "actor", "asset", "partition", "status", "rows", "detail")
MAX_SQL = 100_000  # characters of one statement

action = text("an audit action such as materialization or erasure", pattern=r"[a-z][a-z_]{0,63}")
lineage_target = text("an asset key or asset.column such as features/customer_daily.spend_30d",
                      pattern=r"[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*(?:\.[A-Za-z0-9_]+)?")


def _sql(value: str) -> str:
    if not value.strip() or len(value) > MAX_SQL or "\x00" in value:
        raise argparse.ArgumentTypeError(
            f"expected one SQL statement of at most {MAX_SQL} characters, got {shown(value)}"
        )
    return value


def cmd_verify(args: argparse.Namespace) -> int:
    from ai_data_platform.governance import audit_anchor

    path = audit.audit_path()
    try:
        with audit_anchor.data_dir_anchor() as anchor:
            result = audit.verify(anchor=anchor)
    except audit.AuditError as exc:
        print(f"audit trail unreadable: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    if not result.ok:
        print(f"audit trail {'BROKEN' if result.checked else 'NOT VERIFIED'}: {result.describe(path)}", file=sys.stderr)
        return 1
    if result.anchored_seq is None:
        print(f"{result.describe(path)}; nothing recorded in Dagster for it either")
    else:
        matched = f"the newest record matches the head recorded in Dagster (seq {result.anchored_seq})"
        print(f"{result.describe(path)}; {matched}")
    return 0


def _selected(args: argparse.Namespace) -> list[dict]:
    chosen = []
    for record in audit.records_newest_first():
        if args.asset and record.get("asset") != args.asset:
            continue
        if args.action and record.get("action") != args.action:
            continue
        chosen.append(record)
        if args.limit and len(chosen) >= args.limit:
            break
    return chosen[::-1]


def _cell(record: dict, column: str) -> str:
    details = record.get("details") or {}
    if column == "rows":
        value = (record.get("row_counts") or {}).get("rows")
    elif column == "detail":  # the check, or the failed step
        value = details.get("check") or details.get("step") if record.get("action") != "materialization" else None
    else:
        value = record.get(column)
    return "-" if value is None else str(value)


def cmd_show(args: argparse.Namespace) -> int:
    try:
        records = _selected(args)
    except audit.AuditError as exc:
        print(f"audit trail unreadable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(records, indent=2, sort_keys=True))
        return 0
    rows = [[_cell(r, c) for c in COLUMNS] for r in records]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths)).rstrip())
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from ai_data_platform import runner
    from ai_data_platform.governance import lineage

    graph = runner.load_defs().resolve_asset_graph()
    try:
        tree = lineage.trace(graph, args.target)
    except lineage.LineageError as exc:
        print(f"adp lineage: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sources = tree.sources()
        print(json.dumps({"lineage": tree.to_dict(), "source_files": {p: sorted(c) for p, c in sorted(sources.items())}}, indent=2))
    else:
        print(lineage.render(tree))
    return 0


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_query(args: argparse.Namespace) -> int:
    from ai_data_platform.governance import access, classification
    from ai_data_platform.governance.role_sql import one_line
    from ai_data_platform.sources.assets import IDENTITY_SCHEMA

    try:
        columns, rows = access.run_query(args.role, args.sql, classification.levels(IDENTITY_SCHEMA))
    except access.AccessDenied as exc:
        print(f"access denied: {one_line(str(exc))}", file=sys.stderr)
        return 3
    except Exception as exc:  # a SQL error in an allowed query, or a limit: DuckDB's message is the answer
        print(f"query failed: {one_line(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str))
    else:
        _print_table(columns, rows)
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}, role {args.role})")
    return 0


def add_governance_parsers(sub: argparse._SubParsersAction) -> None:
    """``adp audit``, ``adp lineage`` and ``adp query``."""
    from ai_data_platform.governance.access import ROLES

    a = sub.add_parser("audit", help="the hash-chained audit trail under $ADP_DATA_DIR/audit")
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check the hash chain, the MACs and the head recorded in Dagster; exit 1 naming the first problem")
    v.set_defaults(func=cmd_verify)
    s = asub.add_parser("show", help="print audit records, oldest first")
    s.add_argument("--asset", type=asset_key, help="only this asset (e.g. staging/payments)")
    s.add_argument("--action", type=action, help="only this action (materialization, check, run_failed, step_failed, erasure, retention, ...)")
    s.add_argument("--limit", type=whole(0, 10**9), default=50, help="the newest N matching records (default 50; 0: all)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_show)

    g = sub.add_parser(
        "lineage",
        help="where a column or asset comes from, back to the landing files",
        description="e.g. `adp lineage ml/churn_training_set.payment_failures_30d` or `adp lineage features/customer_daily`",
    )
    g.add_argument("target", metavar="COLUMN_OR_ASSET", type=lineage_target, help="asset key (schema/table) or asset.column")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=cmd_lineage)

    q = sub.add_parser(
        "query",
        help="run one SELECT as an access role, over that role's database only",
        description="Roles: " + "; ".join(f"{r.name}: {r.description}" for r in ROLES.values())
        + " Tables keep their names (marts.customer_360); the role decides what is in them.",
    )
    q.add_argument("--role", required=True, choices=sorted(ROLES), help="the access role to query as")
    q.add_argument("sql", metavar="SQL", type=_sql, help="one SELECT statement")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_query)
