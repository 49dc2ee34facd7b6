"""``adp datasets``: list, show and diff the versioned training datasets.

Each subcommand prints a readable table by default and JSON with ``--json``. An error (unknown
dataset or version, a damaged or tampered file) is an ``InputError``: ``adp`` prints it as one line
on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from ai_data_platform.errors import InputError
from ai_data_platform.ml import datasets


def _component(what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            return datasets.validate_path_component(value, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def _format_number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _short_hash(content_hash: str) -> str:
    return content_hash[: len("sha256:") + 12]


# ---------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    summaries = datasets.list_datasets()
    if args.json:
        _print_json(summaries)
        return 0
    if not summaries:
        print(f"no datasets under {datasets.datasets_root()}")
        return 0
    rows = [
        [s["name"], s["version"], str(s["rows"]), _format_number(s["label_rate"]), s["code_version"], _short_hash(s["content_hash"]), s["created_at"]]
        for s in summaries
    ]
    print(_table(["NAME", "VERSION", "ROWS", "LABEL_RATE", "CODE_VERSION", "CONTENT_HASH", "CREATED_AT"], rows))
    return 0


# ---------------------------------------------------------------- show


def _format_manifest(m: dict) -> str:
    balance = m["label_balance"]
    lines = [
        f"dataset       {m['name']} {m['version']}",
        f"rows          {m['row_count']}",
        f"keys          {', '.join(m['key_columns'])}",
        f"label         {m['label']}: {balance['positives']} positive / {balance['negatives']} negative (rate {_format_number(balance['positive_rate'])})",
        f"code_version  {m['code_version']}",
        f"content_hash  {m['content_hash']}",
        f"created_at    {m['created_at']}",
        "",
        "schema:",
        _table(["COLUMN", "TYPE"], [[c["name"], c["type"]] for c in m["schema"]]),
        "",
        "features:",
        _table(["FEATURE", "DEFINITION_HASH", "DESCRIPTION"], [[f["name"], f["definition_hash"], f["description"]] for f in m["features"]]),
        "",
        "upstream:",
    ]
    for asset, info in sorted(m["upstream"].items()):
        details = ", ".join(f"{k}={v}" for k, v in sorted(info.items()))
        lines.append(f"  {asset}: {details}")
    if m.get("validation") is not None:
        lines += ["", f"validation: {json.dumps(m['validation'], sort_keys=True)}"]
    if m.get("history"):
        lines += ["", "history:"]
        lines += [f"  {h['at']} {h['event']}: previous {h['previous_content_hash']} (reason: {h['reason']})" for h in m["history"]]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    manifest = datasets.read_manifest(args.name, args.version)
    if args.json:
        _print_json(manifest)
    else:
        print(_format_manifest(manifest))
    return 0


# ---------------------------------------------------------------- diff


def _format_diff(d: dict) -> str:
    schema, rows, label_rate = d["schema"], d["rows"], d["label_rate"]
    changed_types = ", ".join(f"{c['column']} {c['old']} -> {c['new']}" for c in schema["type_changed"])
    lines = [
        f"dataset {d['name']}: {d['old']} -> {d['new']}",
        f"rows        {rows['old']} -> {rows['new']} ({rows['delta']:+d})",
        f"label rate  {_format_number(label_rate['old'])} -> {_format_number(label_rate['new'])}",
        f"columns added:        {', '.join(schema['added']) or 'none'}",
        f"columns removed:      {', '.join(schema['removed']) or 'none'}",
        f"column types changed: {changed_types or 'none'}",
        "",
        "feature drift (PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant):",
    ]
    rows_out = [
        [
            feature,
            f"{_format_number(s['old_mean'])} -> {_format_number(s['new_mean'])}",
            f"{_format_number(s['old_null_rate'], 3)} -> {_format_number(s['new_null_rate'], 3)}",
            _format_number(s["psi"]),
            "yes" if s["definition_changed"] else "no",
        ]
        for feature, s in d["features"].items()
    ]
    lines.append(_table(["FEATURE", "MEAN", "NULL_RATE", "PSI", "DEFINITION_CHANGED"], rows_out))
    return "\n".join(lines)


def cmd_diff(args: argparse.Namespace) -> int:
    diff = datasets.diff_versions(args.name, args.old, args.new)
    if args.json:
        _print_json(diff)
    else:
        print(_format_diff(diff))
    return 0


# ---------------------------------------------------------------- parser


def _reporting_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a dataset error into an ``InputError`` naming the dataset, the version or the file."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except datasets.DatasetError as exc:
            raise InputError(str(exc)) from exc

    return run


def add_datasets_parser(subparsers) -> None:
    """Add ``datasets {list,show,diff}`` to an argparse sub-parser collection."""
    parser = subparsers.add_parser(
        "datasets",
        help="versioned training datasets: list, show a manifest, diff two versions",
        description="Versioned, immutable training datasets under $ADP_DATA_DIR/datasets.",
    )
    commands = parser.add_subparsers(dest="datasets_command", required=True)

    listing = commands.add_parser("list", help="every dataset version: rows, label rate, code version, content hash")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=_reporting_errors(cmd_list))

    show = commands.add_parser("show", help="the manifest of one version: schema, label balance, features, lineage")
    show.add_argument("name", type=_component("name"), help="dataset name, e.g. churn")
    show.add_argument("version", type=_component("version"), help="version, e.g. 2026-10-01")
    show.add_argument("--json", action="store_true", help="print the manifest as JSON")
    show.set_defaults(func=_reporting_errors(cmd_show))

    diff = commands.add_parser("diff", help="schema, row, label-rate and feature drift (PSI) between two versions")
    diff.add_argument("name", type=_component("name"), help="dataset name, e.g. churn")
    diff.add_argument("old", type=_component("version"), help="reference version (PSI bins come from it)")
    diff.add_argument("new", type=_component("version"), help="version compared against it")
    diff.add_argument("--json", action="store_true", help="print the diff as JSON")
    diff.set_defaults(func=_reporting_errors(cmd_diff))
