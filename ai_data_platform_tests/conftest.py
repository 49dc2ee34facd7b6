"""Shared fixtures. Tests never touch ./data: every test that writes state gets a temp ADP_DATA_DIR."""

import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# Partitions must not depend on whatever ./data holds on the developer's machine, and no test may
# write there by accident: the default data dir for the whole session is a fresh temp dir.
os.environ["ADP_PARTITION_START"] = "2026-01-01"
os.environ["ADP_DATA_DIR"] = tempfile.mkdtemp(prefix="adp-test-session-")
os.environ.pop("ADP_ALERT_WEBHOOK_URL", None)

END = date(2026, 11, 20)

# Property-based and fuzz tests: derandomized (the same examples on every run, so CI is
# reproducible), bounded example counts, and no per-example deadline (a busy machine is slow, not
# wrong). HYPOTHESIS_PROFILE=explore draws fresh, many more examples for a local hunt.
_UNHURRIED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
hypothesis_settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, database=None, print_blob=True, suppress_health_check=_UNHURRIED
)
hypothesis_settings.register_profile("explore", max_examples=2000, deadline=None, database=None, suppress_health_check=_UNHURRIED)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "adp"
    d.mkdir()
    monkeypatch.setenv("ADP_DATA_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def long_history(tmp_path_factory):
    """A warehouse with 95 days of history (300 customers) materialized through the nightly job,
    shared by the feature-oracle and ML tests. Returns (paths, instance, first_day, END)."""
    import dagster as dg

    from ai_data_platform import settings
    from ai_data_platform.definitions import defs
    from ai_data_platform.resources import build_resources
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import generate

    root = tmp_path_factory.mktemp("long_history")
    paths = settings.Paths(root)
    days = 95
    generate(LandingZones.from_settings(paths), customers=300, days=days, end=END, seed=21)
    first = END - timedelta(days=days - 1)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("nightly")
    result = job.execute_in_process(
        instance=instance,
        resources=build_resources(paths),
        tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": END.isoformat()},
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    assert result.success
    return paths, instance, first, END


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """Three days of 30 customers materialized through the nightly job (every batch asset and
    check) on a SQLite-backed instance, the instance's default storage. Shared by the compliance
    tests (PII gates, audit and lineage sensor, access roles). Returns (paths, instance, days)."""
    import dagster as dg

    from ai_data_platform import settings
    from ai_data_platform.definitions import defs
    from ai_data_platform.resources import build_resources
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import generate

    root = tmp_path_factory.mktemp("tiny_world")
    paths = settings.Paths(root)
    generate(LandingZones.from_settings(paths), customers=30, days=3, end=END, seed=5, dirty_rate=0.0)
    days = [END - timedelta(days=2 - i) for i in range(3)]
    (root / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(root / "dagster_home"), overrides={"telemetry": {"enabled": False}})
    result = defs.resolve_job_def("nightly").execute_in_process(
        instance=instance,
        resources=build_resources(paths),
        tags={
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
            "adp/actor": "tiny-world-fixture",
        },
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return paths, instance, days


@pytest.fixture(scope="session")
def lifecycle_built(tmp_path_factory):
    """The tiny lifecycle world (``lifecycle_world.build``: regional stores, landing zones,
    warehouse, datasets), built once per session and never changed: tests work on copies."""
    from . import lifecycle_world

    return lifecycle_world.build(tmp_path_factory.mktemp("lifecycle") / "adp")


@pytest.fixture()
def lifecycle_paths(lifecycle_built, tmp_path, monkeypatch):
    """A private copy of the lifecycle world, with ADP_DATA_DIR and the HMAC key pointing at it."""
    from . import lifecycle_world

    p = lifecycle_world.copy(lifecycle_built, tmp_path / "adp")
    monkeypatch.setenv("ADP_DATA_DIR", str(p.root))
    monkeypatch.setenv("ADP_PII_HMAC_KEY", lifecycle_world.KEY)
    return p


# --------------------------------------------------------------------------------------------------
# Parallel runs (`make test` runs pytest-xdist with `--dist loadgroup`): each worker builds its own
# session fixtures, so the modules sharing an expensive one run on one worker, as do a module's
# tests (module fixtures); the longest groups start first so the workers finish together.
# --------------------------------------------------------------------------------------------------

SHARED_WORLDS = ("long_history", "tiny_world", "lifecycle_built")
"""Session fixtures that take seconds to minutes to build: every module using one is in its group."""

LONGEST_FIRST = ("test_production", "long_history", "test_cli", "test_pipeline", "lifecycle_built", "tiny_world",
                 "test_erasure_property")
"""Groups known to take the longest (see the --durations report), scheduled before the rest."""


def _worker_groups(items: list[pytest.Item]) -> dict[str, str]:
    """module name -> its group: the shared world it uses, else the module itself."""
    groups: dict[str, str] = {}
    for item in items:
        world = next((w for w in SHARED_WORLDS if w in item.fixturenames), None)
        if world or item.path.stem not in groups:
            groups[item.path.stem] = world or item.path.stem
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = _worker_groups(items)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.path.stem]))
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item.path.stem], len(rank)))  # stable: order within a group kept
