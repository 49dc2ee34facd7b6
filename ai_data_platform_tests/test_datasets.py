"""Versioned training datasets: canonical bytes, immutability, verified reads, drift and the CLI."""

import argparse
import hashlib
import json
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_data_platform.ml import datasets
from ai_data_platform.ml.datasets import (
    DatasetError,
    DatasetImmutableError,
    DatasetNotFound,
    FeatureRef,
    diff_versions,
    list_datasets,
    load_dataset,
    population_stability_index,
    read_manifest,
    write_version,
)
from ai_data_platform.ml.datasets_cli import add_datasets_parser

V1, V2 = "2026-10-01", "2026-10-02"
FEATURES = [
    FeatureRef("spend_30d", "hash-spend", "Amount spent in the last 30 days"),
    FeatureRef("logins_7d", "hash-logins", "Logins in the last 7 days"),
    FeatureRef("plan", "hash-plan", "Subscription plan"),
]
UPSTREAM = {"features/customer_daily": {"data_version": "dv-1", "partition": V1}}


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path / "adp"))
    return datasets.datasets_root()


def make_frame(rows: int = 300, seed: int = 0, spend_shift: float = 0.0, first_id: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.normal(100 + spend_shift, 20, rows)
    spend[::10] = np.nan
    return pd.DataFrame({
        "customer_id": np.arange(first_id, first_id + rows, dtype="int64"),
        "spend_30d": spend,
        "logins_7d": rng.poisson(20, rows).astype("int64"),
        "plan": rng.choice(["basic", "pro"], rows),
        "churned": (np.arange(rows) % 4 == 0).astype("int64"),  # exactly one in four
    })


def write(frame, version=V1, **overrides):
    kwargs = dict(key_columns=["customer_id"], label="churned", features=FEATURES, code_version="code-1", upstream=UPSTREAM)
    kwargs.update(overrides)
    return write_version("churn", version, frame, **kwargs)


def shuffled(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    return frame.sample(frac=1, random_state=seed)


def version_files(root, name="churn", version=V1):
    directory = root / name / version
    return directory / "data.parquet", directory / "manifest.json"


# ---------------------------------------------------------------- canonical bytes


def test_files_land_under_adp_data_dir(root, tmp_path):
    assert root == (tmp_path / "adp" / "datasets").resolve()
    write(make_frame())
    data, manifest = version_files(root)
    assert data.is_file() and manifest.is_file()


def test_same_frame_and_shuffled_copy_give_identical_bytes_in_two_roots(tmp_path):
    frame = make_frame()
    first = write(frame, root=tmp_path / "a")
    second = write(shuffled(frame), root=tmp_path / "b")
    first_bytes = (tmp_path / "a" / "churn" / V1 / "data.parquet").read_bytes()
    second_bytes = (tmp_path / "b" / "churn" / V1 / "data.parquet").read_bytes()
    assert first_bytes == second_bytes
    assert first["content_hash"] == second["content_hash"] == "sha256:" + hashlib.sha256(first_bytes).hexdigest()

    changed = frame.copy()
    changed.loc[5, "logins_7d"] += 1
    assert write(changed, root=tmp_path / "c")["content_hash"] != first["content_hash"]


def test_a_pre_encoded_version_is_written_exactly_like_its_frame(root, tmp_path):
    frame = make_frame(rows=300, seed=4)
    encoded = datasets.encode_version(shuffled(frame), key_columns=["customer_id"], label="churned", features=FEATURES)
    manifest = write(encoded)
    other_root = tmp_path / "other"
    direct = write_version("churn", V1, frame, key_columns=["customer_id"], label="churned", features=FEATURES,
                           code_version="code-1", upstream=UPSTREAM, root=other_root)
    assert manifest["content_hash"] == direct["content_hash"] == encoded.content_hash
    assert manifest["row_count"] == 300 and manifest["label_balance"] == direct["label_balance"]
    with pytest.raises(DatasetError, match="other key columns"):
        write(encoded, version=V2, key_columns=["customer_id", "plan"])


def test_rows_are_sorted_by_key_and_column_order_is_kept(root):
    frame = make_frame()[["plan", "customer_id", "churned", "logins_7d", "spend_30d"]]
    write(shuffled(frame))
    table = pq.read_table(version_files(root)[0])
    assert table.column_names == ["plan", "customer_id", "churned", "logins_7d", "spend_30d"]
    assert table.column("customer_id").to_pylist() == sorted(frame["customer_id"])


def test_composite_keys_sort_lexicographically(root):
    frame = pd.DataFrame({"region": ["b", "a", "b", "a"], "customer_id": [1, 2, 0, 1], "churned": [1, 0, 0, 1]})
    write(frame, key_columns=["region", "customer_id"], features=[])
    loaded = load_dataset("churn", V1)
    assert list(zip(loaded["region"], loaded["customer_id"])) == [("a", 1), ("a", 2), ("b", 0), ("b", 1)]


# ---------------------------------------------------------------- immutability


def test_same_content_rebuild_is_a_noop(root):
    original = write(make_frame())
    data, manifest = version_files(root)
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns, data.stat().st_mtime_ns)

    again = write(shuffled(make_frame()), code_version="code-2")

    assert again == original and again["code_version"] == "code-1"
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns, data.stat().st_mtime_ns) == before


def test_different_content_is_refused_with_both_hashes_and_how_to_force(root):
    original = write(make_frame())
    data, manifest = version_files(root)
    before = (data.read_bytes(), manifest.read_bytes())
    changed = make_frame(seed=1)

    with pytest.raises(DatasetImmutableError) as caught:
        write(changed)

    message = str(caught.value)
    new_hash = write(changed, root=root.parent / "elsewhere")["content_hash"]
    for expected in ("'churn'", V1, original["content_hash"], new_hash, "force=True", "--force"):
        assert expected in message
    assert (data.read_bytes(), manifest.read_bytes()) == before


def test_forced_rebuild_replaces_content_and_records_history(root):
    first = write(make_frame())
    second = write(make_frame(seed=1), force=True, reason="late billing data")

    assert second["content_hash"] != first["content_hash"]
    assert read_manifest("churn", V1) == second
    pd.testing.assert_frame_equal(load_dataset("churn", V1), make_frame(seed=1))
    [event] = second["history"]
    assert event["event"] == "forced_rebuild"
    assert event["previous_content_hash"] == first["content_hash"]
    assert event["reason"] == "late billing data"
    assert datetime.fromisoformat(event["at"]).utcoffset().total_seconds() == 0

    third = write(make_frame(seed=2), force=True, reason="bug fix")
    assert [h["reason"] for h in third["history"]] == ["late billing data", "bug fix"]
    assert third["history"][1]["previous_content_hash"] == second["content_hash"]


def test_force_with_same_content_changes_nothing(root):
    original = write(make_frame())
    manifest_bytes = version_files(root)[1].read_bytes()
    assert write(make_frame(), force=True, reason="just because") == original
    assert version_files(root)[1].read_bytes() == manifest_bytes


# ---------------------------------------------------------------- atomic writes


def test_writes_leave_no_temp_directories(root):
    write(make_frame())
    write(make_frame(seed=1), force=True, reason="r")
    write(make_frame(), version=V2)
    assert sorted(p.name for p in (root / "churn").iterdir()) == [V1, V2]
    assert sorted(p.name for p in (root / "churn" / V1).iterdir()) == ["data.parquet", "manifest.json"]


def test_crash_while_writing_leaves_no_version(root, monkeypatch):
    def fail_on_manifest(path, data):
        if path.name == "manifest.json":
            raise OSError("disk full")
        path.write_bytes(data)

    monkeypatch.setattr(datasets, "_write_file", fail_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        write(make_frame())
    assert list((root / "churn").iterdir()) == []
    with pytest.raises(DatasetNotFound):
        load_dataset("churn", V1)


def test_crash_during_forced_rebuild_keeps_the_old_version(root, monkeypatch):
    original = write(make_frame())
    real_write_file = datasets._write_file

    def fail_on_manifest(path, data):
        if path.name == "manifest.json":
            raise OSError("disk full")
        real_write_file(path, data)

    monkeypatch.setattr(datasets, "_write_file", fail_on_manifest)
    with pytest.raises(OSError):
        write(make_frame(seed=1), force=True, reason="r")
    assert read_manifest("churn", V1) == original
    pd.testing.assert_frame_equal(load_dataset("churn", V1), make_frame())
    assert [p.name for p in (root / "churn").iterdir()] == [V1]


# ---------------------------------------------------------------- manifest contents


def test_manifest_records_schema_balance_features_and_lineage(root):
    manifest = write(make_frame(), validation={"success": True, "evaluated": np.int64(12)}, extra={"owner": "ds-team"})
    assert json.loads(version_files(root)[1].read_text()) == manifest
    assert manifest["name"] == "churn" and manifest["version"] == V1
    assert manifest["row_count"] == 300
    assert manifest["schema"] == [
        {"name": "customer_id", "type": "int64"},
        {"name": "spend_30d", "type": "double"},
        {"name": "logins_7d", "type": "int64"},
        {"name": "plan", "type": "string"},
        {"name": "churned", "type": "int64"},
    ]
    assert manifest["label_balance"] == {"positives": 75, "negatives": 225, "positive_rate": 0.25}
    assert manifest["features"][0] == {"name": "spend_30d", "definition_hash": "hash-spend", "description": "Amount spent in the last 30 days"}
    assert manifest["key_columns"] == ["customer_id"] and manifest["label"] == "churned"
    assert manifest["upstream"] == UPSTREAM and manifest["code_version"] == "code-1"
    assert manifest["validation"] == {"success": True, "evaluated": 12}
    assert manifest["extra"] == {"owner": "ds-team"} and manifest["history"] == []
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset().total_seconds() == 0


def test_boolean_label_balance(root):
    frame = make_frame(rows=10).assign(churned=[True, False, False, False, False, True, False, False, False, False])
    assert write(frame)["label_balance"] == {"positives": 2, "negatives": 8, "positive_rate": 0.2}


@pytest.mark.parametrize(
    ("label_values", "label", "message"),
    [
        (None, "missing_label", "not in the frame"),
        ([0, 1, 2, 0], "churned", "must be binary"),
        ([0.0, 1.0, np.nan, 0.0], "churned", "null values"),
        (["yes", "no", "no", "no"], "churned", "boolean or 0/1"),
    ],
)
def test_label_must_be_a_binary_column(root, label_values, label, message):
    frame = make_frame(rows=4)
    if label_values is not None:
        frame["churned"] = label_values
    with pytest.raises(DatasetError, match=message):
        write(frame, label=label)
    assert not (root / "churn" / V1).exists()


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([FeatureRef("no_such_column", "h")], "'no_such_column' is not a column"),
        ([FeatureRef("churned", "h")], "is the label column"),
        ([FeatureRef("plan", "h"), FeatureRef("plan", "h2")], "declared twice"),
    ],
)
def test_features_must_be_columns_of_the_frame(root, features, message):
    with pytest.raises(DatasetError, match=message):
        write(make_frame(), features=features)


def test_duplicate_keys_are_rejected_with_key_and_count(root):
    frame = make_frame(rows=10)
    frame.loc[[1, 2], "customer_id"] = 1  # ids were 1..10: customer 1 now three times
    frame.loc[5, "customer_id"] = 5  # and customer 5 twice
    with pytest.raises(DatasetError) as caught:
        write(frame)
    message = str(caught.value)
    assert "['customer_id']" in message
    assert "2 key values appear more than once (3 duplicate rows)" in message
    assert not (root / "churn").exists()


def test_null_keys_are_rejected(root):
    frame = make_frame(rows=5).astype({"customer_id": "float64"})
    frame.loc[2, "customer_id"] = np.nan
    with pytest.raises(DatasetError, match="key column 'customer_id' has 1 null"):
        write(frame)


# ---------------------------------------------------------------- reads


def test_load_round_trips_values_and_dtypes(root):
    rows = 6
    frame = pd.DataFrame({
        "customer_id": np.array([6, 3, 1, 5, 2, 4], dtype="int64"),
        "spend_30d": [1.5, np.nan, 3.0, -2.0, 0.0, 7.25],
        "logins_7d": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
        "plan": pd.Categorical(["pro", "basic", "pro", "basic", "pro", "pro"]),
        "note": ["a", None, "c", "d", "e", "f"],
        "signup": pd.to_datetime(["2026-01-0%d" % d for d in range(1, rows + 1)]),
        "active": [True, False, True, True, False, True],
        "churned": [0, 1, 0, 0, 1, 0],
    })
    write(frame)
    loaded = load_dataset("churn", V1)
    expected = frame.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(loaded, expected, check_dtype=True, check_categorical=True)


def test_arrow_table_input_is_accepted(root):
    table = pa.Table.from_pandas(shuffled(make_frame()), preserve_index=False)
    write(table)
    assert load_dataset("churn", V1)["customer_id"].tolist() == list(range(1, 301))


def test_tampered_file_is_detected(root):
    write(make_frame())
    data = version_files(root)[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="content hash mismatch"):
        load_dataset("churn", V1)


def test_valid_parquet_swapped_in_is_detected(root, tmp_path):
    write(make_frame())
    write(make_frame(seed=3), root=tmp_path / "other")
    version_files(root)[0].write_bytes((tmp_path / "other" / "churn" / V1 / "data.parquet").read_bytes())
    with pytest.raises(DatasetError, match="content hash mismatch"):
        load_dataset("churn", V1)


def test_not_found_lists_available_versions_and_datasets(root):
    write(make_frame())
    write(make_frame(), version=V2)
    with pytest.raises(DatasetNotFound) as caught:
        load_dataset("churn", "2026-09-30")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == f"dataset 'churn' has no version '2026-09-30'; available versions: {V1}, {V2}"

    with pytest.raises(DatasetNotFound, match="no dataset named 'fraud'.*available datasets: churn"):
        read_manifest("fraud", V1)


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", ".hidden", "", "2026..10", "x" * 200, "2026-10-01\n"])
def test_invalid_version_or_name_is_rejected(root, bad):
    with pytest.raises(ValueError, match="invalid dataset version"):
        write(make_frame(), version=bad)
    with pytest.raises(ValueError, match="invalid dataset version"):
        load_dataset("churn", bad)
    with pytest.raises(ValueError, match="invalid dataset name"):
        write_version(bad, V1, make_frame(), key_columns=["customer_id"], label="churned", features=[], code_version="c", upstream={})
    assert not root.exists() or list(root.rglob("*")) == []


def test_list_datasets_summarizes_every_version_and_skips_unpublished_dirs(root):
    write(make_frame(), version=V2, code_version="code-2")
    write(make_frame(rows=40), version=V1)
    write_version("fraud", V1, make_frame(rows=8).rename(columns={"churned": "is_fraud"}), key_columns=["customer_id"],
                  label="is_fraud", features=[], code_version="code-f", upstream={})
    (root / "churn" / ".tmp-2026-10-03-abc").mkdir()
    (root / "churn" / "2026-10-04").mkdir()  # no manifest: not a published version

    summaries = list_datasets()

    assert [(s["name"], s["version"]) for s in summaries] == [("churn", V1), ("churn", V2), ("fraud", V1)]
    assert summaries[0]["rows"] == 40 and summaries[1]["rows"] == 300
    assert summaries[1]["code_version"] == "code-2" and summaries[1]["label_rate"] == 0.25
    assert summaries[2]["label_rate"] == 0.25
    assert summaries[1]["content_hash"] == read_manifest("churn", V2)["content_hash"]


def test_list_datasets_on_empty_root(root):
    assert list_datasets() == []


# ---------------------------------------------------------------- PSI


def test_psi_of_identical_samples_is_zero():
    sample = np.random.default_rng(0).normal(size=2000)
    assert population_stability_index(sample, sample) == pytest.approx(0, abs=1e-12)


def test_psi_of_two_samples_from_one_distribution_is_small():
    rng = np.random.default_rng(0)
    assert population_stability_index(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_psi_of_a_shifted_distribution_is_large():
    rng = np.random.default_rng(0)
    assert population_stability_index(rng.normal(size=5000), rng.normal(1, 1, size=5000)) > 0.25


def test_psi_grows_with_the_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(size=5000)
    small, large = (population_stability_index(base, rng.normal(s, 1, 5000)) for s in (0.3, 1.0))
    assert 0.02 < small < large


def test_psi_of_constant_columns():
    assert population_stability_index(np.full(100, 3.0), np.full(50, 3.0)) == pytest.approx(0, abs=1e-12)
    assert population_stability_index(np.full(100, 3.0), np.full(50, 4.0)) > 5
    assert population_stability_index(np.full(100, 3.0), np.full(50, 2.0)) > 5


def test_psi_sees_a_rate_change_in_a_rare_binary_feature():
    expected = np.r_[np.ones(5), np.zeros(95)]
    actual = np.r_[np.ones(50), np.zeros(50)]
    assert population_stability_index(expected, expected.copy()) == pytest.approx(0, abs=1e-12)
    assert population_stability_index(expected, actual) > 0.25


def test_psi_treats_nan_as_its_own_bin():
    rng = np.random.default_rng(0)
    expected = rng.normal(size=1000)
    # Same values plus as many NaNs: every value bin halves, the empty NaN bin (1e-6) gets half.
    half_nan = np.r_[expected, np.full(1000, np.nan)]
    value_bins = 0.5 * np.log(2)
    nan_bin = (0.5 - 1e-6) * np.log(0.5 / 1e-6)
    assert population_stability_index(expected, half_nan) == pytest.approx(value_bins + nan_bin)

    with_nans = expected.copy()
    with_nans[::2] = np.nan
    assert population_stability_index(with_nans, with_nans.copy()) == pytest.approx(0, abs=1e-12)
    assert np.isfinite(population_stability_index(np.full(10, np.nan), rng.normal(size=10)))


def test_psi_accepts_nullable_pandas_series():
    expected = pd.Series([1, 2, None, 4, 5] * 20, dtype="Int64")
    assert population_stability_index(expected, expected.copy()) == pytest.approx(0, abs=1e-12)


def test_psi_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one value"):
        population_stability_index([], [1.0])


# ---------------------------------------------------------------- diff


def write_two_versions():
    old = make_frame(rows=1000, seed=0)
    new = make_frame(rows=1200, seed=1, spend_shift=40).drop(columns=["plan"]).assign(region="eu")
    new["churned"] = (np.arange(1200) % 2 == 0).astype("int64")
    write(old, version=V1)
    new_features = [FeatureRef("spend_30d", "hash-spend-v2"), FeatureRef("logins_7d", "hash-logins"), FeatureRef("region", "h")]
    write(new, version=V2, features=new_features)


def test_diff_reports_schema_rows_label_rate_and_drift(root):
    write_two_versions()
    diff = diff_versions("churn", V1, V2)

    assert diff["schema"] == {"added": ["region"], "removed": ["plan"], "type_changed": []}
    assert diff["rows"] == {"old": 1000, "new": 1200, "delta": 200}
    assert diff["label_rate"] == {"old": 0.25, "new": 0.5}
    assert set(diff["features"]) == {"spend_30d", "logins_7d"}  # plan removed, region is new and a string

    spend, logins = diff["features"]["spend_30d"], diff["features"]["logins_7d"]
    assert spend["psi"] > 0.25 and spend["definition_changed"] is True
    assert spend["new_mean"] - spend["old_mean"] == pytest.approx(40, abs=5)
    assert spend["old_null_rate"] == pytest.approx(0.1) and spend["new_null_rate"] == pytest.approx(0.1)
    assert logins["psi"] < 0.05 and logins["definition_changed"] is False


def test_diff_reports_type_changes(root):
    frame = make_frame()
    write(frame, version=V1)
    write(frame.astype({"logins_7d": "float64"}), version=V2)
    diff = diff_versions("churn", V1, V2)
    assert diff["schema"]["type_changed"] == [{"column": "logins_7d", "old": "int64", "new": "double"}]
    assert diff["features"]["logins_7d"]["psi"] == pytest.approx(0, abs=1e-12)


def test_diff_of_unknown_version_raises_not_found(root):
    write(make_frame())
    with pytest.raises(DatasetNotFound, match=V1):
        diff_versions("churn", V1, V2)


# ---------------------------------------------------------------- CLI


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_datasets_parser(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_list_text_and_json(root, capsys):
    write(make_frame())
    code, out, _ = run_cli(["datasets", "list"], capsys)
    assert code == 0
    header, line = out.strip().splitlines()
    assert header.split() == ["NAME", "VERSION", "ROWS", "LABEL_RATE", "CODE_VERSION", "CONTENT_HASH", "CREATED_AT"]
    assert line.split()[:5] == ["churn", V1, "300", "0.2500", "code-1"]

    code, out, _ = run_cli(["datasets", "list", "--json"], capsys)
    [entry] = json.loads(out)
    assert code == 0 and entry == list_datasets()[0]


def test_cli_list_with_no_datasets(root, capsys):
    assert run_cli(["datasets", "list"], capsys)[1].startswith("no datasets under")
    assert json.loads(run_cli(["datasets", "list", "--json"], capsys)[1]) == []


def test_cli_show_text_and_json(root, capsys):
    manifest = write(make_frame(), validation={"success": True})
    code, out, _ = run_cli(["datasets", "show", "churn", V1], capsys)
    assert code == 0
    assert manifest["content_hash"] in out
    assert "75 positive / 225 negative (rate 0.2500)" in out
    assert "hash-spend" in out and "features/customer_daily: data_version=dv-1" in out

    code, out, _ = run_cli(["datasets", "show", "churn", V1, "--json"], capsys)
    assert code == 0 and json.loads(out) == manifest


def test_cli_diff_text_and_json(root, capsys):
    write_two_versions()
    code, out, _ = run_cli(["datasets", "diff", "churn", V1, V2], capsys)
    assert code == 0
    assert "rows        1000 -> 1200 (+200)" in out
    assert "columns added:        region" in out and "columns removed:      plan" in out
    spend_line = next(line for line in out.splitlines() if line.startswith("spend_30d"))
    assert float(spend_line.split()[-2]) > 0.25

    code, out, _ = run_cli(["datasets", "diff", "churn", V1, V2, "--json"], capsys)
    parsed = json.loads(out)
    assert code == 0 and parsed == json.loads(json.dumps(diff_versions("churn", V1, V2)))
    assert parsed["rows"]["delta"] == 200 and parsed["schema"]["removed"] == ["plan"]


def test_cli_reports_errors_as_one_line_on_stderr_with_exit_code_2(root, capsys):
    from ai_data_platform import cli

    write(make_frame())
    code = cli.main(["datasets", "show", "churn", "2026-09-30"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("adp datasets show: ") and V1 in err

    version_files(root)[0].write_bytes(b"not parquet")
    code = cli.main(["datasets", "diff", "churn", V1, V1])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("adp datasets diff: ") and "content hash mismatch" in err


def test_cli_rejects_invalid_version_as_usage_error(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["datasets", "show", "churn", "../../etc"], capsys)
    assert exit_info.value.code == 2
    assert "invalid dataset version" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["datasets"], ["list", "show", "diff"]),
        (["datasets", "list"], ["--json"]),
        (["datasets", "show"], ["name", "version", "--json"]),
        (["datasets", "diff"], ["old", "new", "--json"]),
    ],
)
def test_cli_help(capsys, argv, mentions):
    with pytest.raises(SystemExit) as exit_info:
        run_cli([*argv, "--help"], capsys)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    assert all(word in out for word in mentions)
