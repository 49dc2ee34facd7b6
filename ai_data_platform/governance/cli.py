"""The compliance subcommands of ``adp``, registered by :func:`add_governance_parsers`.

- ``adp audit verify`` exits 1 naming the first broken line of the hash chain; ``adp audit show``
  prints the newest records (filtered by asset and action) oldest first, as a table or ``--json``.
- ``adp lineage COLUMN_OR_ASSET`` prints where a column (or asset) comes from, back to the
  landing files, as a tree or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ai_data_platform.governance import audit

COLUMNS = ("seq", "ts", "action", "actor", "asset", "partition", "status", "rows")


def cmd_verify(args: argparse.Namespace) -> int:
    path = audit.audit_path()
    try:
        result = audit.verify()
    except audit.AuditError as exc:
        print(f"audit trail unreadable: {exc}", file=sys.stderr)
        return 1
    if result.ok:
        print(result.describe(path))
        return 0
    print(f"audit trail BROKEN: {result.describe(path)}", file=sys.stderr)
    return 1


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
    if column == "rows":
        value = (record.get("row_counts") or {}).get("rows")
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


def add_governance_parsers(sub: argparse._SubParsersAction) -> None:
    """``adp audit`` and ``adp lineage``."""
    a = sub.add_parser("audit", help="the hash-chained audit trail under $ADP_DATA_DIR/audit")
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="recompute the hash chain; exit 1 naming the first broken line")
    v.set_defaults(func=cmd_verify)
    s = asub.add_parser("show", help="print audit records, oldest first")
    s.add_argument("--asset", help="only this asset (e.g. staging/payments)")
    s.add_argument("--action", help="only this action (materialization, check, run_failed, step_failed, erasure, retention, ...)")
    s.add_argument("--limit", type=int, default=50, help="the newest N matching records (default 50; 0: all)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_show)

    g = sub.add_parser(
        "lineage",
        help="where a column or asset comes from, back to the landing files",
        description="e.g. `adp lineage ml/churn_training_set.payment_failures_30d` or `adp lineage features/customer_daily`",
    )
    g.add_argument("target", metavar="COLUMN_OR_ASSET", help="asset key (schema/table) or asset.column")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=cmd_lineage)
