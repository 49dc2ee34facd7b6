"""The audit log's anchor in Dagster's storage: the head of every append, out of the log writer's reach.

Each append records its new head (``trail_id``, ``seq``, ``hash``, ``mac``) as an observation of
the ``meta/audit_log`` asset (``DagsterInstance.report_runless_asset_event``) under the name of the
deployment's trail (``ADP_AUDIT_TRAIL``, default ``adp``), never under the log's path: the newest
head recorded under that name is the one a log must reach, wherever the data directory is mounted,
linked or copied to; ``adp audit verify`` compares the log with it
(:func:`ai_data_platform.governance.audit.verify`).

The anchor is as strong as the storage. With PostgreSQL storage (``DAGSTER_PG_*``, production)
the writer of ``$ADP_DATA_DIR/audit`` has no write access to it, so a log cut short, rolled back
or replaced no longer matches; a copy of the data directory writing to the same storage is a
second writer of the same trail, and the first append of either leaves the other behind (it then
no longer matches and takes no appends). With the default SQLite storage under
``$ADP_DATA_DIR/dagster_home`` (a copy of the data directory carries its own), whoever can rewrite
the data directory can rewrite both: local and demo use only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from ai_data_platform.governance.audit import AnchorUnavailable, Head
from ai_data_platform.private_files import restrict_tree

AUDIT_LOG_KEY = dg.AssetKey(["meta", "audit_log"])
#: Observations read per page while looking for a log's newest head.
PAGE = 100


def _reason(exc: Exception) -> str:
    """An exception as a short one-line reason (database errors can run to pages)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class DagsterAnchor:
    """Heads recorded as ``meta/audit_log`` observations in one Dagster instance's storage."""

    where = "Dagster"

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def newest(self, trail: str) -> Head | None:
        """The newest head recorded under the trail name ``trail``, or None (observations without a
        trail name, written before trails were named, are not heads of any)."""
        try:
            cursor = None
            while True:
                page = self.instance.fetch_observations(AUDIT_LOG_KEY, limit=PAGE, cursor=cursor)
                for record in page.records:
                    metadata = {k: v.value for k, v in record.asset_observation.metadata.items()}
                    if metadata.get("trail") == trail:
                        return Head(int(metadata["head_seq"]), str(metadata["head_hash"]), str(metadata["head_mac"]),
                                    str(metadata["trail_id"]))
                if not page.has_more:
                    return None
                cursor = page.cursor
        except Exception as exc:  # an unreachable or broken storage: the caller decides
            raise AnchorUnavailable(_reason(exc)) from exc

    def record(self, trail: str, head: Head) -> None:
        metadata = {"trail": trail, "trail_id": head.trail_id, "head_seq": head.seq, "head_hash": head.hash,
                    "head_mac": head.mac}
        try:
            self.instance.report_runless_asset_event(dg.AssetObservation(asset_key=AUDIT_LOG_KEY, metadata=metadata))
        except Exception as exc:
            raise AnchorUnavailable(_reason(exc)) from exc


class _DataDirAnchor:
    """:class:`DagsterAnchor` on the instance ``adp`` commands use, opened on first use; an
    instance that cannot be opened is an anchor out of reach."""

    where = DagsterAnchor.where

    def __init__(self) -> None:
        self.instance: dg.DagsterInstance | None = None

    def _anchor(self) -> DagsterAnchor:
        if self.instance is None:
            from ai_data_platform import runner

            try:
                self.instance = runner.prepare_instance()
            except Exception as exc:
                raise AnchorUnavailable(f"cannot open the Dagster instance: {_reason(exc)}") from exc
        return DagsterAnchor(self.instance)

    def newest(self, trail: str) -> Head | None:
        return self._anchor().newest(trail)

    def record(self, trail: str, head: Head) -> None:
        anchor = self._anchor()
        anchor.record(trail, head)
        if self.instance.root_directory:  # Dagster may have created a storage file with the umask's mode
            restrict_tree(self.instance.root_directory)


@contextmanager
def data_dir_anchor() -> Iterator[_DataDirAnchor]:
    """The anchor in the Dagster storage of this data directory, for the block: the instance of
    ``runner.prepare_instance`` (``$ADP_DATA_DIR/dagster_home``, on PostgreSQL when configured)."""
    anchor = _DataDirAnchor()
    try:
        yield anchor
    finally:
        if anchor.instance is not None:
            anchor.instance.dispose()
