"""OpenLineage events: valid against the published 2-0-2 and facet schemas, START before
COMPLETE/FAIL for every run, facets that describe the data, delivery to an HTTP endpoint."""

import hashlib
import json
import os
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.definitions import defs
from ai_data_platform.governance import audit
from ai_data_platform.governance import openlineage as ol
from ai_data_platform.governance.audit_sensor import evaluate_audit_once

REPO = Path(__file__).resolve().parents[1]
VENDORED_SPEC = Path(__file__).resolve().parent / "openlineage_spec"  # the published schemas, unchanged
SHARED_SPEC = REPO.parent / "shared" / "openlineage-spec"
SPEC_DIR = Path(os.environ.get("OPENLINEAGE_SPEC_DIR") or VENDORED_SPEC)


@pytest.fixture(scope="module")
def validate():
    assert (SPEC_DIR / "OpenLineage.json").is_file(), f"OpenLineage schemas not found in {SPEC_DIR}"
    return ol.validator(SPEC_DIR)


def _schemas(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.json")}


def test_the_vendored_schemas_are_the_published_ones():
    """The copy in the repository is byte for byte the published one: the SHA-256 of every file as
    taken from the project's shared copy (SHA256SUMS), each schema's ``$id`` an OpenLineage spec
    URL, and — where ``../shared/openlineage-spec`` exists — equal to it file for file."""
    vendored = _schemas(VENDORED_SPEC)
    pinned = dict(reversed(line.split(maxsplit=1)) for line in (VENDORED_SPEC / "SHA256SUMS").read_text().splitlines())
    assert {name: hashlib.sha256(data).hexdigest() for name, data in vendored.items()} == pinned and len(pinned) == 16
    for name, data in vendored.items():
        assert json.loads(data)["$id"].startswith("https://openlineage.io/spec/"), name
    if SHARED_SPEC.is_dir():
        assert vendored == _schemas(SHARED_SPEC)


@pytest.fixture()
def emitted(tiny_world, tmp_path, monkeypatch):
    """Every OpenLineage event of the tiny world's nightly run, and its audit records."""
    paths, instance, days = tiny_world
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADP_AUDIT_TRAIL", tmp_path.name)  # a trail of its own in the shared instance
    monkeypatch.delenv(ol.URL_ENV, raising=False)
    evaluate_audit_once(instance, defs, None)
    return ol.LineageSink.from_env().read(), list(audit.records()), tiny_world


def test_every_emitted_event_validates_against_the_spec_and_facet_schemas(emitted, validate):
    events, _, _ = emitted
    assert len(events) > 100
    errors = {i: validate(e) for i, e in enumerate(events)}
    assert {i: e for i, e in errors.items() if e} == {}
    facets = {name for e in events for d in e["outputs"] for name in d.get("facets", {})}
    assert {"schema", "columnLineage", "dataQualityMetrics", "version", "tags", "ownership", "documentation"} <= facets
    assert any("dataQualityAssertions" in d.get("inputFacets", {}) for e in events for d in e["inputs"])


def test_the_validator_rejects_broken_events(emitted, validate):
    events, _, _ = emitted
    complete = next(e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "features/customer_daily")
    no_run_id = json.loads(json.dumps(complete))
    del no_run_id["run"]["runId"]
    assert any("runId" in err for err in validate(no_run_id))
    bad_metric = json.loads(json.dumps(complete))
    bad_metric["outputs"][0]["facets"]["dataQualityMetrics"]["rowCount"] = "many"
    assert any("dataQualityMetrics" in err and "rowCount" in err for err in validate(bad_metric))
    bad_lineage = json.loads(json.dumps(complete))
    next(iter(bad_lineage["outputs"][0]["facets"]["columnLineage"]["fields"].values()))["inputFields"] = [{"name": "x"}]
    assert any("columnLineage" in err for err in validate(bad_lineage))


def test_each_run_starts_before_it_completes(emitted):
    events, records, _ = emitted
    by_run = defaultdict(list)
    for position, event in enumerate(events):
        by_run[event["run"]["runId"]].append((position, event["eventType"], event["eventTime"]))
    for run_id, seen in by_run.items():
        assert [kind for _, kind, _ in seen] in (["START", "COMPLETE"], ["START", "FAIL"]), run_id
        assert seen[0][2] <= seen[1][2], run_id  # ISO-8601 UTC strings order as times
    expected = {r["details"]["openlineage_run_id"] for r in records}
    assert expected == set(by_run)  # one OpenLineage run per materialization and per check result


def test_facets_describe_the_partition_that_was_written(emitted):
    events, _, (paths, instance, days) = emitted
    day = days[-1].isoformat()
    (complete,) = [
        e for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == "features/customer_daily"
        and e["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(day)
    ]
    (output,) = complete["outputs"]
    assert output["name"] == "features.customer_daily"
    assert output["namespace"] == f"duckdb://{settings.paths().warehouse}"  # the sensor's ADP_DATA_DIR
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        rows, nulls = con.execute(
            "SELECT count(*), count(*) - count(card_txn_avg_amount_90d) FROM features.customer_daily WHERE _partition_date = ?", [days[-1]]
        ).fetchone()
    finally:
        con.close()
    metrics = output["facets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == rows > 0
    assert metrics["columnMetrics"]["card_txn_avg_amount_90d"] == {"nullCount": nulls}
    assert metrics["columnMetrics"]["customer_id"] == {"nullCount": 0}
    fields = output["facets"]["columnLineage"]["fields"]
    assert {(f["name"], f["field"]) for f in fields["payment_failures_30d"]["inputFields"]} == {
        ("staging.payments", "status"), ("staging.payments", "created_at")
    }
    assert {t["field"]: t["value"] for t in output["facets"]["tags"]["tags"]}["customer_id"] == "none"
    assert "staging.payments" in {i["name"] for i in complete["inputs"]}
    run = instance.get_runs()[0]
    assert complete["run"]["facets"]["parent"]["run"]["runId"] == run.run_id
    assert complete["run"]["facets"]["parent"]["job"]["name"] == "nightly"
    raw = next(e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "raw/payments"
               and e["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(day))
    assert f"landing/billing/payments/{day}.parquet" in {i["name"] for i in raw["inputs"]}
    customers = next(e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "raw/customers"
                     and e["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(day))
    files = {(i["namespace"], i["name"]) for i in customers["inputs"] if "landing/" in i["name"]}
    root = settings.paths().root  # the day's export of every region, each in its zone
    assert files == {(f"file://{root}", f"regions/{r}/landing/crm/customers/{day}.csv") for r in ("EU", "US", "APAC")}
    segment = customers["outputs"][0]["facets"]["columnLineage"]["fields"]["segment"]["inputFields"]
    assert {(f["namespace"], f["name"], f["field"]) for f in segment} == {(ns, name, "segment") for ns, name in files}


class _Collector(BaseHTTPRequestHandler):
    received: list = []
    failing = False

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failing:
            self.send_response(503)
            self.end_headers()
            return
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint():
    _Collector.received, _Collector.failing = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector
    server.shutdown()
    server.server_close()


def test_events_are_posted_and_a_failing_endpoint_only_delays_them(tiny_world, tmp_path, monkeypatch, endpoint):
    url, collector = endpoint
    _, instance, _ = tiny_world
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADP_AUDIT_TRAIL", tmp_path.name)  # a trail of its own in the shared instance
    monkeypatch.setenv(ol.URL_ENV, url)
    collector.failing = True
    down = evaluate_audit_once(instance, defs, None, max_events=10)  # a few events, endpoint down
    assert down.records > 0 and down.delivery.error and "503" in down.delivery.error
    written = ol.LineageSink.from_env().read()
    assert down.delivery.pending == len(written) and collector.received == []
    collector.failing = False
    up = evaluate_audit_once(instance, defs, down.cursor, max_events=10)
    assert up.delivery.error is None and up.delivery.pending == 0
    assert [body for _, body in collector.received] == ol.LineageSink.from_env().read()
    assert {path for path, _ in collector.received} == {"/api/v1/lineage"}
    again = evaluate_audit_once(instance, defs, up.cursor, max_events=10)
    assert len(collector.received) == len(ol.LineageSink.from_env().read())  # nothing sent twice
    assert again.delivery.delivered == again.lineage_events
