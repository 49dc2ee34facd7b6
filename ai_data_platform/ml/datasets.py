"""Versioned, immutable, reproducible training datasets.

A dataset version lives in its own directory::

    <root>/<name>/<version>/data.parquet    the rows, canonical bytes
    <root>/<name>/<version>/manifest.json   what the rows are and where they came from

``root`` defaults to ``$ADP_DATA_DIR/datasets``. Pure Python (pandas + pyarrow), no Dagster.

Guarantees:

* **Reproducible bytes.** Rows are sorted by the key columns, columns keep the given order and
  Parquet is written with fixed options, so the same frame (in any row order) gives byte-identical
  files in the same environment (same pyarrow and pandas versions, which the manifest records).
  ``content_hash`` is ``sha256:`` + the SHA-256 of ``data.parquet``. Anything time-dependent
  (``created_at``) lives in the manifest only.
* **Atomic.** A version is written into a hidden temp directory next to its target and renamed
  into place, so readers never see a half-written version; hidden directories are ignored.
* **Immutable.** Rewriting a version with the same content is a no-op (the manifest is not
  touched); different content is refused with :class:`DatasetImmutableError` unless
  ``force=True``, which replaces it and appends a ``forced_rebuild`` event to the manifest's
  ``history``.
* **Verified reads.** :func:`load_dataset` checks the file's hash against the manifest first.
* **Erasure and retention.** :func:`erase_rows` rewrites a version without a data subject's rows
  (new content hash; an ``erasure`` event naming the subject only by its HMAC reference goes into
  ``history``); :func:`delete_version` removes an expired version and leaves a tombstone, so reading
  it says when and why it went instead of "not found".
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_data_platform import settings
from ai_data_platform.private_files import make_private_dir, new_private_dir, open_private

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
FORCE_HINT = "pass force=True (CLI: --force) with a reason to replace it"

# Fixed Parquet writer options: changing any of them changes every content hash.
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_size": 1 << 20,
    "data_page_version": "1.0",
    "row_group_size": 256 * 1024,
    "store_schema": True,  # the serialized Arrow schema is deterministic and keeps dtypes exact
    "write_page_index": False,
    "write_page_checksum": False,
    "use_compliant_nested_type": True,
}

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PSI_EPSILON = 1e-6


@dataclass(frozen=True)
class FeatureRef:
    """A feature column of a dataset and the hash of the definition that produced it."""

    name: str
    definition_hash: str
    description: str = ""


class DatasetError(Exception):
    """A dataset cannot be written or read as asked."""


class DatasetImmutableError(DatasetError):
    """A rebuild would change the content of an existing version."""


class DatasetNotFound(DatasetError, KeyError):
    """No such dataset or version."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DatasetDeleted(DatasetNotFound):
    """The version existed and was deleted (by retention): the message says when and why."""


# ---------------------------------------------------------------- paths


def datasets_root() -> Path:
    """``$ADP_DATA_DIR/datasets``, resolved at call time."""
    return settings.data_dir() / "datasets"


def validate_path_component(value: str, what: str) -> str:
    """Return ``value`` if it is a safe single directory name, else raise ``ValueError``.

    Allowed: letters, digits, ``.``, ``_``, ``-``; must start with a letter or digit (so never
    hidden, never ``.``/``..``), at most 128 characters, no ``..`` anywhere.
    """
    if not isinstance(value, str) or not _SAFE_COMPONENT.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid dataset {what} {value!r}: use letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit, no slashes and no '..' (e.g. 'churn', '2026-10-01')"
        )
    return value


def _version_dir(root: Path, name: str, version: str) -> Path:
    validate_path_component(name, "name")
    validate_path_component(version, "version")
    return root / name / version


def _visible_subdirs(directory: Path) -> list[str]:
    """Names of non-hidden subdirectories (temp and retired directories start with '.')."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _published_versions(root: Path, name: str) -> list[str]:
    return [v for v in _visible_subdirs(root / name) if (root / name / v / MANIFEST_FILE).is_file()]


def _not_found(root: Path, name: str, version: str) -> DatasetNotFound:
    versions = _published_versions(root, name)
    if versions:
        return DatasetNotFound(
            f"dataset {name!r} has no version {version!r}; available versions: {', '.join(versions)}"
        )
    names = [n for n in _visible_subdirs(root) if _published_versions(root, n)]
    available = ", ".join(names) if names else "none"
    return DatasetNotFound(f"no dataset named {name!r} under {root}; available datasets: {available}")


# ---------------------------------------------------------------- canonical table and bytes


def _to_arrow(frame: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(frame, pa.Table):
        table = frame
    elif isinstance(frame, pd.DataFrame):
        table = pa.Table.from_pandas(frame, preserve_index=False)
    else:
        raise TypeError(f"frame must be a pandas DataFrame or a pyarrow Table, got {type(frame).__name__}")
    duplicated = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if duplicated:
        raise DatasetError(f"duplicate column names: {duplicated}")
    return table


def _check_keys(table: pa.Table, key_columns: list[str]) -> None:
    """Key columns must exist, hold no nulls and identify rows uniquely."""
    if not key_columns:
        raise DatasetError("key_columns must name at least one column")
    missing = [k for k in key_columns if k not in table.column_names]
    if missing:
        raise DatasetError(f"key columns {missing} are not in the frame (columns: {table.column_names})")
    for key in key_columns:
        nulls = table.column(key).null_count
        if nulls:
            raise DatasetError(f"key column {key!r} has {nulls} null values")
    counts = table.select(key_columns).group_by(key_columns).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if repeated.num_rows:
        surplus_rows = pc.sum(repeated.column("count_all")).as_py() - repeated.num_rows
        example = repeated.slice(0, 1).to_pylist()[0]
        times = example.pop("count_all")
        raise DatasetError(
            f"key {key_columns} is not unique: {repeated.num_rows} key values appear more than once "
            f"({surplus_rows} duplicate rows), e.g. {example} appears {times} times"
        )


def _canonical_table(table: pa.Table, key_columns: list[str]) -> pa.Table:
    """Rows sorted by the keys (stable), columns in the given order, one chunk per column."""
    return table.sort_by([(k, "ascending") for k in key_columns]).combine_chunks()


def _parquet_bytes(table: pa.Table, key_columns: list[str]) -> bytes:
    buffer = io.BytesIO()
    sorting = pq.SortingColumn.from_ordering(table.schema, [(k, "ascending") for k in key_columns])
    pq.write_table(table, buffer, sorting_columns=sorting, **PARQUET_OPTIONS)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- manifest pieces


def _label_balance(table: pa.Table, label: str) -> dict:
    """Positives/negatives of a boolean or 0/1 label column without nulls."""
    if label not in table.column_names:
        raise DatasetError(f"label column {label!r} is not in the frame (columns: {table.column_names})")
    column = table.column(label)
    if column.null_count:
        raise DatasetError(f"label column {label!r} has {column.null_count} null values")
    kind = column.type
    if not (pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise DatasetError(f"label column {label!r} must be boolean or 0/1 numeric, got type {kind}")
    values = column.to_numpy().astype(float)
    others = sorted(set(np.unique(values)) - {0.0, 1.0})
    if others:
        raise DatasetError(f"label column {label!r} must be binary (0/1), found other values {others[:5]}")
    positives = int((values == 1.0).sum())
    rows = len(values)
    return {
        "positives": positives,
        "negatives": rows - positives,
        "positive_rate": positives / rows if rows else None,
    }


def _feature_entries(table: pa.Table, features: Sequence[FeatureRef], label: str) -> list[dict]:
    """Every feature must be a column of the frame, declared once, and not the label."""
    entries, seen = [], set()
    for feature in features:
        if not isinstance(feature, FeatureRef):
            raise TypeError(f"features must be FeatureRef instances, got {type(feature).__name__}")
        if feature.name not in table.column_names:
            raise DatasetError(f"feature {feature.name!r} is not a column of the frame (columns: {table.column_names})")
        if feature.name == label:
            raise DatasetError(f"feature {feature.name!r} is the label column (target leakage)")
        if feature.name in seen:
            raise DatasetError(f"feature {feature.name!r} is declared twice")
        seen.add(feature.name)
        entries.append({"name": feature.name, "definition_hash": feature.definition_hash, "description": feature.description})
    return entries


def _schema_entries(schema: pa.Schema) -> list[dict]:
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    """Make numpy scalars, dates, paths and sets (e.g. in validation summaries) JSON-serializable."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):  # datetime, date, pd.Timestamp
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _manifest_bytes(manifest: dict) -> bytes:
    try:
        text = json.dumps(manifest, sort_keys=True, indent=2, default=_json_default)
    except TypeError as exc:
        raise DatasetError(f"manifest is not JSON serializable (check upstream/validation/extra): {exc}") from None
    return (text + "\n").encode()


def _history_event(event: str, previous_content_hash: str, reason: str | None, **details: Any) -> dict:
    """One entry of a manifest's ``history`` (``forced_rebuild`` or ``erasure``)."""
    return {"event": event, "previous_content_hash": previous_content_hash, "reason": reason, "at": _utc_now(), **details}


# ---------------------------------------------------------------- atomic publication


def _write_file(path: Path, data: bytes) -> None:
    with open_private(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage(parent: Path, version: str, data: bytes, manifest: bytes) -> Path:
    """Write both files into a hidden owner-only temp directory under ``parent``; return it."""
    make_private_dir(parent)
    staging = parent / f".tmp-{version}-{uuid.uuid4().hex}"
    new_private_dir(staging)
    try:
        _write_file(staging / DATA_FILE, data)
        _write_file(staging / MANIFEST_FILE, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _publish_new(staging: Path, target: Path) -> bool:
    """Rename ``staging`` to ``target``; False (staging removed) if ``target`` appeared meanwhile."""
    try:
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and target.exists():
            return False
        raise
    _fsync_dir(target.parent)
    return True


def _publish_replacement(staging: Path, target: Path) -> None:
    """Swap ``staging`` in for an existing ``target``.

    Directories cannot be replaced in one rename, so the old version is first renamed aside to a
    hidden ``.retired-*`` directory (recoverable if we crash between the two renames), then
    removed once the new one is in place.
    """
    retired = target.parent / f".retired-{target.name}-{uuid.uuid4().hex}"
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


# ---------------------------------------------------------------- write


@dataclass(frozen=True)
class EncodedVersion:
    """A dataset's rows encoded as the canonical Parquet bytes, with what the manifest says of them."""

    data: bytes
    content_hash: str
    schema: list[dict]
    row_count: int
    key_columns: list[str]
    label: str
    label_balance: dict
    features: list[dict]


def encode_version(
    frame: pd.DataFrame | pa.Table, *, key_columns: Sequence[str], label: str, features: Sequence[FeatureRef]
) -> EncodedVersion:
    """Check keys and label and encode ``frame`` canonically (sorted by the keys, fixed Parquet
    options): the same rows always give the same bytes and content hash. Mostly pyarrow work that
    releases the GIL, so it can run while another thread imports or validates."""
    if isinstance(key_columns, str):
        raise TypeError("key_columns must be a sequence of column names, not a single string")
    keys = list(key_columns)
    table = _to_arrow(frame)
    _check_keys(table, keys)
    label_balance = _label_balance(table, label)
    feature_entries = _feature_entries(table, features, label)
    table = _canonical_table(table, keys)
    data = _parquet_bytes(table, keys)
    return EncodedVersion(data, _sha256(data), _schema_entries(table.schema), table.num_rows, keys, label,
                          label_balance, feature_entries)


def write_version(
    name: str,
    version: str,
    frame: pd.DataFrame | pa.Table | EncodedVersion,
    *,
    key_columns: Sequence[str],
    label: str,
    features: Sequence[FeatureRef],
    code_version: str,
    upstream: Mapping[str, Mapping[str, str | None]],
    validation: Mapping | None = None,
    extra: Mapping | None = None,
    force: bool = False,
    reason: str | None = None,
    root: Path | None = None,
) -> dict:
    """Write ``frame`` (or its :func:`encode_version`) as dataset ``name`` at ``version`` and return
    its manifest.

    Same content as the existing version: nothing is written, the existing manifest is returned.
    Different content: :class:`DatasetImmutableError`, unless ``force`` (then replaced, with a
    ``forced_rebuild`` event carrying ``reason`` appended to ``history``).
    """
    root = Path(root) if root is not None else datasets_root()
    target = _version_dir(root, name, version)
    encoded = frame if isinstance(frame, EncodedVersion) else encode_version(
        frame, key_columns=key_columns, label=label, features=features
    )
    if encoded.key_columns != list(key_columns) or encoded.label != label:
        raise DatasetError("the encoded version was made with other key columns or another label")
    data, content_hash = encoded.data, encoded.content_hash

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "version": version,
        "schema": encoded.schema,
        "row_count": encoded.row_count,
        "key_columns": encoded.key_columns,
        "label": label,
        "label_balance": encoded.label_balance,
        "features": encoded.features,
        "code_version": code_version,
        "upstream": {asset: dict(info) for asset, info in upstream.items()},
        "validation": dict(validation) if validation is not None else None,
        "content_hash": content_hash,
        "created_at": _utc_now(),
        "history": [],
        "extra": dict(extra) if extra is not None else {},
        "writer": {"pyarrow": pa.__version__, "pandas": pd.__version__},
    }

    existing = _read_manifest_if_present(target)
    if existing is None:
        manifest_bytes = _manifest_bytes(manifest)
        staging = _stage(target.parent, version, data, manifest_bytes)
        if _publish_new(staging, target):
            return json.loads(manifest_bytes)  # exactly what read_manifest will return
        existing = _read_manifest_at(target)  # a concurrent writer published first
    if existing["content_hash"] == content_hash:
        return existing
    if not force:
        raise DatasetImmutableError(_immutable_message(existing, manifest))

    manifest["history"] = list(existing.get("history", [])) + [
        _history_event("forced_rebuild", existing["content_hash"], reason)
    ]
    manifest_bytes = _manifest_bytes(manifest)
    staging = _stage(target.parent, version, data, manifest_bytes)
    _publish_replacement(staging, target)
    return json.loads(manifest_bytes)


def _immutable_message(existing: dict, new: dict) -> str:
    message = (
        f"dataset {new['name']!r} version {new['version']!r} already exists with different content: "
        f"existing {existing['content_hash']} ({existing.get('row_count')} rows), "
        f"new {new['content_hash']} ({new['row_count']} rows). Versions are immutable; {FORCE_HINT}."
    )
    if existing.get("writer") and existing["writer"] != new["writer"]:
        message += f" Note: the writer changed from {existing['writer']} to {new['writer']}, which alone changes bytes."
    return message


# ---------------------------------------------------------------- read


# What readers of a manifest rely on: a file without them is damaged, not a dataset.
_MANIFEST_KEYS = ("name", "version", "schema", "row_count", "key_columns", "label", "label_balance", "features",
                  "code_version", "upstream", "content_hash", "created_at")


def _read_manifest_at(directory: Path) -> dict:
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"manifest {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"manifest {path} is not valid JSON: {exc}") from None
    missing = [k for k in _MANIFEST_KEYS if k not in manifest] if isinstance(manifest, dict) else list(_MANIFEST_KEYS)
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise DatasetError(f"manifest {path} is damaged: it lacks {', '.join(missing[:5])}{more}")
    return manifest


def _read_manifest_if_present(directory: Path) -> dict | None:
    return _read_manifest_at(directory) if (directory / MANIFEST_FILE).is_file() else None


def read_manifest(name: str, version: str, *, root: Path | None = None) -> dict:
    """The manifest of ``name``/``version``; :class:`DatasetNotFound` lists what exists, or says
    when and why a deleted version was deleted."""
    root = Path(root) if root is not None else datasets_root()
    manifest = _read_manifest_if_present(_version_dir(root, name, version))
    if manifest is None:
        tombstone = _tombstone_path(root, name, version)
        if tombstone.is_file():
            raise DatasetDeleted(_deleted_message(name, version, json.loads(tombstone.read_text())))
        raise _not_found(root, name, version)
    return manifest


def load_dataset(name: str, version: str, *, root: Path | None = None) -> pd.DataFrame:
    """The rows of ``name``/``version`` as pandas, after verifying the file against its manifest."""
    return load_dataset_table(name, version, root=root).to_pandas()


def load_dataset_table(name: str, version: str, *, root: Path | None = None) -> pa.Table:
    """The rows of ``name``/``version`` as Arrow (where NaN and null differ), after verifying the
    file against its manifest."""
    root = Path(root) if root is not None else datasets_root()
    manifest = read_manifest(name, version, root=root)
    path = _version_dir(root, name, version) / DATA_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"dataset {name!r} version {version!r}: {path} is missing") from None
    actual = _sha256(data)
    if actual != manifest["content_hash"]:
        raise DatasetError(
            f"dataset {name!r} version {version!r}: content hash mismatch for {path}: "
            f"manifest says {manifest['content_hash']}, file is {actual} (corrupted or tampered)"
        )
    return pq.read_table(io.BytesIO(data))


def list_datasets(*, root: Path | None = None) -> list[dict]:
    """One summary per published (name, version), sorted by name then version."""
    root = Path(root) if root is not None else datasets_root()
    summaries = []
    for name in _visible_subdirs(root):
        for version in _published_versions(root, name):
            manifest = _read_manifest_at(root / name / version)
            summaries.append({
                "name": name,
                "version": version,
                "rows": manifest["row_count"],
                "label_rate": manifest["label_balance"]["positive_rate"],
                "content_hash": manifest["content_hash"],
                "code_version": manifest["code_version"],
                "created_at": manifest["created_at"],
            })
    return summaries


# ---------------------------------------------------------------- erasure and retention

TOMBSTONES = ".tombstones"


def tombstone_path(parent: Path, version: str) -> Path:
    """Where the tombstone of a deleted version directory ``parent/<version>`` is kept (hidden, so
    listings ignore it)."""
    return parent / TOMBSTONES / f"{version}.json"


def read_tombstone(parent: Path, version: str) -> dict | None:
    path = tombstone_path(parent, version)
    return json.loads(path.read_text()) if path.is_file() else None


def retire_directory(target: Path, tombstone: dict) -> None:
    """Delete a version directory (datasets and models alike), leaving ``tombstone`` in its place:
    written first, then the directory renamed aside (readers stop seeing it at once) and removed."""
    path = tombstone_path(target.parent, target.name)
    make_private_dir(path.parent)
    _write_file(path, _manifest_bytes(tombstone))
    retired = target.parent / f".retired-{target.name}-{uuid.uuid4().hex}"
    os.rename(target, retired)
    shutil.rmtree(retired)
    _fsync_dir(target.parent)


def _tombstone_path(root: Path, name: str, version: str) -> Path:
    return tombstone_path(root / validate_path_component(name, "name"), validate_path_component(version, "version"))


def _deleted_message(name: str, version: str, tombstone: dict) -> str:
    return (
        f"dataset {name!r} version {version!r} was deleted on {tombstone.get('deleted_at')} by {tombstone.get('by')}"
        f" ({tombstone.get('reason')}); its content hash was {tombstone.get('content_hash')}"
    )


def erase_rows(
    name: str,
    version: str,
    column: str,
    values: set[str],
    *,
    subject: str,
    reason: str | None,
    root: Path | None = None,
) -> int:
    """Rewrite ``name``/``version`` without the rows whose ``column``, spaces around it aside (as the
    warehouse's ``trim``), is in ``values``; returns how many rows went. The new version gets its
    own content hash and an ``erasure`` history event naming ``subject`` (an HMAC reference, never
    the id) and the row count removed."""
    root = Path(root) if root is not None else datasets_root()
    manifest = read_manifest(name, version, root=root)
    frame = load_dataset(name, version, root=root)  # verifies the content hash first
    if column not in frame.columns:
        return 0
    drop = frame[column].astype("string").str.strip(" ").isin(values).fillna(False).to_numpy()
    removed = int(drop.sum())
    if not removed:
        return 0
    features = [FeatureRef(f["name"], f["definition_hash"], f.get("description", "")) for f in manifest["features"]]
    encoded = encode_version(frame[~drop], key_columns=manifest["key_columns"], label=manifest["label"], features=features)
    updated = dict(manifest)
    updated.update(
        schema=encoded.schema,
        row_count=encoded.row_count,
        label_balance=encoded.label_balance,
        content_hash=encoded.content_hash,
        history=list(manifest.get("history", []))
        + [_history_event("erasure", manifest["content_hash"], reason, subject=subject, rows_removed=removed)],
    )
    target = _version_dir(root, name, version)
    staging = _stage(target.parent, version, encoded.data, _manifest_bytes(updated))
    _publish_replacement(staging, target)
    return removed


def delete_version(name: str, version: str, *, by: str, reason: str, root: Path | None = None) -> dict:
    """Delete ``name``/``version`` (data and manifest) and leave a tombstone saying when, by what
    and why, which :func:`read_manifest` and :func:`load_dataset` report. Returns the tombstone."""
    root = Path(root) if root is not None else datasets_root()
    manifest = read_manifest(name, version, root=root)
    tombstone = {"name": name, "version": version, "deleted_at": _utc_now(), "by": by, "reason": reason,
                 "content_hash": manifest["content_hash"], "row_count": manifest["row_count"]}
    retire_directory(_version_dir(root, name, version), tombstone)
    return tombstone


# ---------------------------------------------------------------- drift and diff


def _as_float_array(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series/arrays, including nullable dtypes with pd.NA
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def _bin_shares(values: np.ndarray, assign_bins, n_bins: int) -> np.ndarray:
    """Share of ``values`` per bin, with NaN in an extra last bin."""
    is_nan = np.isnan(values)
    counts = np.bincount(assign_bins(values[~is_nan]), minlength=n_bins)
    return np.append(counts, is_nan.sum()) / len(values)


def population_stability_index(expected: Any, actual: Any, bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected`` (the reference sample).

    Bins come from ``expected``: cut points at its ``bins``-quantiles (duplicates merged), or, when
    it has at most ``bins`` distinct values (constant, boolean, small counts), one bin per value
    plus one for anything else. NaN is a bin of its own. Empty bins count as ``1e-6`` so the
    logarithm stays finite. ``sum((a - e) * ln(a / e))``: < 0.1 stable, 0.1–0.25 moderate shift,
    > 0.25 significant shift.
    """
    expected_values, actual_values = _as_float_array(expected), _as_float_array(actual)
    if expected_values.size == 0 or actual_values.size == 0:
        raise ValueError("population_stability_index needs at least one value on each side")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")

    finite = expected_values[np.isfinite(expected_values)]
    distinct = np.unique(finite)
    if len(distinct) <= bins:  # one bin per distinct value, then an "other" bin

        def assign_bins(values: np.ndarray) -> np.ndarray:
            position = np.clip(np.searchsorted(distinct, values), 0, max(len(distinct) - 1, 0))
            matched = distinct[position] == values if len(distinct) else np.zeros(len(values), bool)
            return np.where(matched, position, len(distinct))

        n_bins = len(distinct) + 1
    else:
        cut_points = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))

        def assign_bins(values: np.ndarray) -> np.ndarray:
            return np.searchsorted(cut_points, values, side="right")

        n_bins = len(cut_points) + 1

    expected_shares = _bin_shares(expected_values, assign_bins, n_bins)
    actual_shares = _bin_shares(actual_values, assign_bins, n_bins)
    expected_shares = np.where(expected_shares == 0, PSI_EPSILON, expected_shares)
    actual_shares = np.where(actual_shares == 0, PSI_EPSILON, actual_shares)
    return float(np.sum((actual_shares - expected_shares) * np.log(actual_shares / expected_shares)))


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _feature_drift(old: pd.Series, new: pd.Series, old_hash: str | None, new_hash: str | None) -> dict:
    old_values, new_values = _as_float_array(old), _as_float_array(new)

    def mean(values: np.ndarray) -> float | None:
        present = values[~np.isnan(values)]
        return _finite_or_none(present.mean()) if present.size else None

    def null_rate(values: np.ndarray) -> float | None:
        return float(np.isnan(values).mean()) if values.size else None

    psi = population_stability_index(old_values, new_values) if old_values.size and new_values.size else None
    return {
        "old_mean": mean(old_values),
        "new_mean": mean(new_values),
        "old_null_rate": null_rate(old_values),
        "new_null_rate": null_rate(new_values),
        "psi": _finite_or_none(psi),
        "definition_changed": old_hash != new_hash,
    }


def _schema_diff(old_schema: list[dict], new_schema: list[dict]) -> dict:
    old_types = {c["name"]: c["type"] for c in old_schema}
    new_types = {c["name"]: c["type"] for c in new_schema}
    return {
        "added": [c for c in new_types if c not in old_types],
        "removed": [c for c in old_types if c not in new_types],
        "type_changed": [
            {"column": c, "old": old_types[c], "new": new_types[c]}
            for c in new_types
            if c in old_types and old_types[c] != new_types[c]
        ],
    }


def diff_versions(name: str, old: str, new: str, *, root: Path | None = None) -> dict:
    """Schema, row count, label rate and per-feature drift (mean, null rate, PSI) from ``old`` to ``new``.

    Features compared: those declared in both manifests whose columns are numeric in both
    versions. ``definition_changed`` flags a different ``definition_hash``.
    """
    root = Path(root) if root is not None else datasets_root()
    old_manifest, new_manifest = read_manifest(name, old, root=root), read_manifest(name, new, root=root)
    old_frame, new_frame = load_dataset(name, old, root=root), load_dataset(name, new, root=root)

    old_hashes = {f["name"]: f["definition_hash"] for f in old_manifest["features"]}
    features = {}
    for feature in new_manifest["features"]:
        column = feature["name"]
        if column not in old_hashes or column not in old_frame or column not in new_frame:
            continue
        if not (_is_numeric(old_frame[column]) and _is_numeric(new_frame[column])):
            continue
        features[column] = _feature_drift(old_frame[column], new_frame[column], old_hashes[column], feature["definition_hash"])

    return {
        "name": name,
        "old": old,
        "new": new,
        "schema": _schema_diff(old_manifest["schema"], new_manifest["schema"]),
        "rows": {
            "old": old_manifest["row_count"],
            "new": new_manifest["row_count"],
            "delta": new_manifest["row_count"] - old_manifest["row_count"],
        },
        "label_rate": {
            "old": old_manifest["label_balance"]["positive_rate"],
            "new": new_manifest["label_balance"]["positive_rate"],
        },
        "features": features,
    }
