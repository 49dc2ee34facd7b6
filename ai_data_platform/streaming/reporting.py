"""Runless materializations of ``online/customer_features``, reported by the consumer.

The consumer is not a Dagster run, so it reports with ``instance.report_runless_asset_event``:
the asset's ``FreshnessPolicy`` and the alert sensor then see the stream's progress like any
other materialization. Reports are throttled (``ADP_STREAM_REPORT_SECONDS``, default 30) and sent
from a background thread (importing Dagster and opening the instance take ~2 s; the online path
never waits for them). Dagster is imported only here, only when reporting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from ai_data_platform import settings

ONLINE_ASSET_KEY = ("online", "customer_features")


def report_interval_seconds() -> int:
    return settings.env_int("ADP_STREAM_REPORT_SECONDS", 30, minimum=0)


def report_materialization(metadata: Mapping[str, object], instance=None, description: str | None = None) -> None:
    """One runless materialization of the online store asset with ``metadata``."""
    import dagster as dg

    event = dg.AssetMaterialization(asset_key=dg.AssetKey(list(ONLINE_ASSET_KEY)), metadata=dict(metadata),
                                    description=description)
    if instance is not None:
        instance.report_runless_asset_event(event)
        return
    with dg.DagsterInstance.from_config(str(settings.ensure_dagster_home())) as owned:
        owned.report_runless_asset_event(event)


class Reporter:
    """Sends at most one report per interval, in a background thread; keeps the last error."""

    def __init__(self, interval: float | None = None):
        self.interval = report_interval_seconds() if interval is None else interval
        self._last = float("-inf")
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.error: BaseException | None = None

    def due(self) -> bool:
        busy = self._thread is not None and self._thread.is_alive()
        return not busy and time.monotonic() - self._last >= self.interval

    def maybe_report(self, metadata: Mapping[str, object], force: bool = False) -> bool:
        """Report if the interval has passed (``force``: now, after any report in flight)."""
        if force:
            self.wait()
        elif not self.due():
            return False
        self._last = time.monotonic()

        def send():
            try:
                report_materialization(metadata, description="reported by the stream consumer (runless)")
                self.sent += 1
                self.error = None
            except Exception as exc:  # never stops the stream; surfaced by `adp stream consume`
                self.error = exc

        self._thread = threading.Thread(target=send, name="dagster-report", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float = 60.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
