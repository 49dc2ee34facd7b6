"""Files and folders holding personal data, the warehouse and the audit trail are owner-only
(0600/0700) whatever the umask.

Every writer runs in a fresh Python process started with the umask under test (000: the operating
system's defaults would be 0666/0777; 022: the usual 0644/0755), which reports the modes it saw
while its databases were open and the umask it ended with (nothing may have narrowed it, or the
test would prove nothing). The parent then checks every file and folder under the data directory.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ai_data_platform import private_files
from ai_data_platform_tests.waiting import bound

PROJECT = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_everything(root: Path) -> dict:
    """Run every writer of personal data, audit and warehouse state under ``root`` (the data
    directory); return what was seen while databases were open and the umask at the end."""
    import pandas as pd

    from ai_data_platform import settings, warehouse
    from ai_data_platform.file_lock import locked
    from ai_data_platform.governance import audit
    from ai_data_platform.governance.landing_erasure import write_keeping_mtime
    from ai_data_platform.governance.openlineage import LineageSink, lineage_dir
    from ai_data_platform.governance.stores import RegionalStores
    from ai_data_platform.ml import datasets, models
    from ai_data_platform.observability.alerts import Alert, AlertSink
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import generate
    from ai_data_platform.streaming.online_store import SqliteOnlineStore
    from ai_data_platform.streaming.transport import FileSegmentTransport

    paths = settings.Paths(root)
    seen: dict = {}
    settings.ensure_dagster_home(paths)
    zones = LandingZones.from_settings(paths)
    generate(zones, customers=12, days=2, end=date(2026, 3, 2), seed=3, dirty_rate=0.0)
    crm_file = sorted(zones.regional["EU"].rglob("*.csv"))[0]
    write_keeping_mtime(crm_file, crm_file.read_bytes())  # a landing erasure or residency move

    con = warehouse.connect(paths.warehouse)
    warehouse.ensure_schemas(con)
    con.execute("CREATE TABLE raw.t AS SELECT 'C1' AS customer_id")
    with RegionalStores.from_settings(paths).attached(con) as aliases:
        for a in aliases.values():
            con.execute(f"INSERT INTO {a}.identity.customer_pii (customer_id) VALUES ('C1')")
    con.execute("INSERT INTO raw.t VALUES ('C2')")
    wal = Path(f"{paths.warehouse}.wal")
    seen["warehouse_wal_while_open"] = wal.exists()
    again = warehouse.connect(paths.warehouse)  # a second connection finds the log and narrows it
    seen["warehouse_wal_mode_after_connect"] = _mode(wal) if wal.exists() else None
    again.close()
    con.close()
    warehouse.compact(paths.warehouse)

    audit.append("test", directory=root / "audit", details={"n": 1})
    AlertSink(paths.alerts).write(Alert.create(kind="run_failed", subject="s", marker="m", severity="error"))
    sink = LineageSink(lineage_dir())
    sink.write([{"eventType": "START"}])
    sink._write_offsets({"endpoint": 1})
    with locked(root / "locks" / "tick.lock"):
        pass

    transport = FileSegmentTransport(paths.stream)
    transport.append([b'{"customer_id": "C1"}', b'{"customer_id": "C2"}'])
    transport.erase(lambda payload: b"C1" in payload)
    store = SqliteOnlineStore(paths.online / "features.sqlite")
    store._write(lambda c: c.execute("INSERT OR REPLACE INTO erased_subjects VALUES ('h')"))
    seen["sqlite_siblings_while_open"] = {
        p.name: _mode(p) for p in paths.online.iterdir() if p.name.startswith("features.sqlite-")
    }

    frame = pd.DataFrame({"customer_id": [1, 2, 3, 4], "spend": [1.0, 2.0, 3.0, 4.0], "churned": [0, 1, 0, 1]})
    feature = datasets.FeatureRef("spend", "hash-spend", "spend")
    for version in ("2026-03-01", "2026-03-02"):
        datasets.write_version("churn", version, frame, key_columns=["customer_id"], label="churned", features=[feature],
                               code_version="c", upstream={})
    datasets.delete_version("churn", "2026-03-01", by="test", reason="retention")
    metrics = models.Metrics(roc_auc=0.5, pr_auc=0.5, positives=2, rows=4)
    trained = models.TrainedModel("churn", "2026-03-02", {"customer_ids": ["C1"]}, ["spend"], "churned", metrics, metrics,
                                  [("spend", 1.0)], 3, 1, "2026-03-02T00:00:00", 0.1)
    models.save_model(trained, dataset_manifest={"content_hash": "h", "version": "2026-03-02"}, gate_passed=True, margin=0.0)

    seen["umask_at_end"] = os.umask(0)
    return seen


def _run_with_umask(root: Path, umask: int) -> dict:
    script = (
        f"import json, os; os.umask({umask}); from pathlib import Path; "
        "from ai_data_platform_tests.test_file_permissions import write_everything; "
        f"print(json.dumps(write_everything(Path({str(root)!r}))))"
    )
    env = dict(os.environ, ADP_DATA_DIR=str(root), PYTHONPATH=str(PROJECT))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=bound(1800), env=env,
                          cwd=PROJECT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_everything_written_is_owner_only_whatever_the_umask(tmp_path, umask):
    root = tmp_path / "adp"
    seen = _run_with_umask(root, umask)
    assert seen["umask_at_end"] == umask  # nothing narrowed the umask: the modes below are set explicitly
    assert seen["warehouse_wal_while_open"] and seen["warehouse_wal_mode_after_connect"] == 0o600
    assert set(seen["sqlite_siblings_while_open"]) == {"features.sqlite-wal", "features.sqlite-shm"}
    assert set(seen["sqlite_siblings_while_open"].values()) == {0o600}

    found = {p.relative_to(root).as_posix(): _mode(p) for p in root.rglob("*")}
    expected_somewhere = [
        "warehouse.duckdb", "regions/EU/personal.duckdb", "regions/US/personal.duckdb", "regions/APAC/personal.duckdb",
        "landing/manifest.json", "audit/audit.jsonl", "audit/audit.head", "audit/audit.lock", "alerts.jsonl",
        "lineage/openlineage.jsonl", "stream/events/.head", "stream/events/.lock", "online/features.sqlite",
        "datasets/churn/2026-03-02/data.parquet", "datasets/churn/.tombstones/2026-03-01.json",
        "models/churn/2026-03-02/model.joblib", "dagster_home/dagster.yaml",
    ]
    assert not [name for name in expected_somewhere if name not in found]
    assert any(name.startswith("regions/EU/landing/") and name.endswith(".csv") for name in found)
    assert any(name.startswith("stream/events/") and name.endswith(".log") for name in found)
    wrong = {
        name: oct(mode) for name, mode in found.items()
        if mode != (private_files.DIR_MODE if (root / name).is_dir() else private_files.FILE_MODE)
    }
    assert wrong == {}
    assert _mode(root) == private_files.DIR_MODE


def _in_subprocess_with_umask(umask: int, code: str, root: Path) -> None:
    script = f"import os; os.umask({umask}); from pathlib import Path; root = Path({str(root)!r}); {code}"
    env = dict(os.environ, ADP_DATA_DIR=str(root), PYTHONPATH=str(PROJECT))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=bound(600), env=env,
                          cwd=PROJECT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_an_existing_data_directory_and_files_of_ours_are_narrowed(tmp_path):
    root = tmp_path / "adp"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    (root / "alerts.jsonl").write_text("")
    os.chmod(root / "alerts.jsonl", 0o644)
    outside = tmp_path / "mounted-eu-volume"
    outside.mkdir()
    os.chmod(outside, 0o755)
    _in_subprocess_with_umask(
        0o022,
        "from ai_data_platform.private_files import make_private_dir, open_private; "
        "make_private_dir(root / 'a' / 'b'); open_private(root / 'alerts.jsonl', 'ab').close(); "
        f"make_private_dir(Path({str(outside)!r}) / 'personal')",
        root,
    )
    assert _mode(root) == _mode(root / "a") == _mode(root / "a" / "b") == 0o700
    assert _mode(root / "alerts.jsonl") == 0o600
    assert _mode(outside) == 0o755 and _mode(outside / "personal") == 0o700  # the operator's folder keeps its mode


def test_restrict_umask_only_narrows():
    previous = os.umask(0o002)
    try:
        assert private_files.restrict_umask() == 0o002
        assert os.umask(0o027) == 0o077
        private_files.restrict_umask()
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(previous)


def test_open_private_refuses_read_modes(tmp_path):
    with pytest.raises(ValueError, match="open_private mode"):
        private_files.open_private(tmp_path / "x", "rb")
