"""The late-data sensor re-runs a day only when its landing files changed after it was materialized."""

import os
import time

import dagster as dg
import pytest

from ai_data_platform import settings
from ai_data_platform.definitions import defs
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SOURCE_TABLES
from ai_data_platform.sources.landing import LandingZones, landing_files
from ai_data_platform.sources.sensors import late_landing_sensor


def _land(zones, day, mtime):
    for t in SOURCE_TABLES:
        for path in landing_files(t, day, zones):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
            os.utime(path, (mtime, mtime))


def _touch(path, mtime):
    os.utime(path, (mtime, mtime))


def _tick(instance):
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    return late_landing_sensor.evaluate_tick(context)


def test_changed_file_after_materialization_triggers_that_day_only(data_dir):
    zones = LandingZones.from_settings(settings.Paths(data_dir))
    past = time.time() - 3600
    _land(zones, "2026-11-18", past)
    _land(zones, "2026-11-19", past)
    _land(zones, "2026-11-20", past)
    with dg.instance_for_test() as instance:
        for t in SOURCE_TABLES:
            for day in ("2026-11-18", "2026-11-19"):
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=["raw", t.name], partition=day))
        first = _tick(instance)
        assert first.run_requests == [] and "no landing file" in first.skip_message
        assert str(zones.regional["US"]) in first.skip_message  # every zone is watched

        _touch(zones.file(EVENTS, "2026-11-19"), time.time() + 5)  # the shared zone
        second = _tick(instance)
        assert [r.partition_key for r in second.run_requests] == ["2026-11-19"]
        assert second.run_requests[0].run_key.startswith("late-data:2026-11-19:")
        # the same change yields the same run key, so Dagster launches it once
        assert _tick(instance).run_requests[0].run_key == second.run_requests[0].run_key

        # one region's file of a day (the US CRM export re-delivered) re-runs that day too
        _touch(zones.file(CUSTOMERS, "2026-11-18", "US"), time.time() + 5)
        assert [r.partition_key for r in _tick(instance).run_requests] == ["2026-11-18", "2026-11-19"]


def test_new_day_that_was_never_materialized_is_left_to_the_schedule(data_dir):
    _land(LandingZones.from_settings(settings.Paths(data_dir)), "2026-11-20", time.time())
    with dg.instance_for_test() as instance:
        assert _tick(instance).run_requests == []


def test_late_landing_interval_comes_from_the_environment(monkeypatch):
    from ai_data_platform import settings

    monkeypatch.delenv("ADP_LATE_SENSOR_INTERVAL_SECONDS", raising=False)
    assert settings.late_landing_interval_seconds() == 60
    monkeypatch.setenv("ADP_LATE_SENSOR_INTERVAL_SECONDS", "5")
    assert settings.late_landing_interval_seconds() == 5
    for bad in ("soon", "0"):
        monkeypatch.setenv("ADP_LATE_SENSOR_INTERVAL_SECONDS", bad)
        with pytest.raises(ValueError, match="ADP_LATE_SENSOR_INTERVAL_SECONDS"):
            settings.late_landing_interval_seconds()
