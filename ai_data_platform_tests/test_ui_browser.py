"""The Dagster UI as a person uses it.

`adp ui` (what `make ui` runs) serves a temporary ADP_DATA_DIR holding three days of tiny
generated data. Debian's Chromium (/usr/bin/chromium), driven headless by Playwright, opens the
asset lineage, materializes the newest partition of ``raw/events`` from its asset page
(Materialize… → Latest → Launch 1 run → View), follows the run to success and reads the asset's
Checks tab. Every step leaves a screenshot under ``test-artifacts/ui/`` (a failed step one suffixed
``-FAILED``). Dagster's GraphQL API, which the UI itself reads, is asserted on alongside.

Playwright never downloads a browser here: without /usr/bin/chromium the tests skip, or fail when
``REQUIRE_SERVICES`` is set (CI, whose ``.ci/run`` installs the Debian package).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ai_data_platform import settings
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate
from ai_data_platform_tests.waiting import bound, wait_for

pytestmark = pytest.mark.slow

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = settings.PROJECT_ROOT / "test-artifacts" / "ui"
GROUPS = ("crm", "billing", "behavioral", "marts", "features", "ml", "governance", "streaming")
ASSET_PATH = ["raw", "events"]
ASSET_GROUP = "behavioral"
LANDING_FILE = "behavioral/events/{day}.jsonl"  # the newest day's file: one raw row per line
ASSET = "/".join(ASSET_PATH)
# The raw asset's checks and a phrase of the description each writes when it passes.
CHECKS = {
    "schema_drift": "1 file(s) match the contract",
    "landing_complete": "none cut short",
    "volume_anomaly": "no baseline yet",
}
DAYS = 3
# Bounds (times ADP_TEST_TIME_SCALE): generous, a busy machine is slow, not wrong.
UI_START_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 300
RUN_TIMEOUT_MS = int(bound(900) * 1000)
STEP_TIMEOUT_MS = int(bound(120) * 1000)
# Variables that would point `adp ui` at a production profile (ADP_ENV=prod, Dagster storage in
# PostgreSQL, the CRM database) instead of the embedded default this test exercises.
PROFILE_VARIABLES = re.compile(r"^(ADP_ENV|CRM_DATABASE_URL|DAGSTER_PG_\w+)$")


@dataclass(frozen=True)
class Ui:
    """A running `adp ui`: where it answers, its data directory, the newest partition of its data, its log file."""

    url: str
    data_dir: Path
    newest_day: date
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(ui: Ui, query: str, **variables) -> dict:
    """POST one query to the UI's GraphQL endpoint: the answer's ``data``, failing on any error."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{ui.url}/graphql", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=bound(REQUEST_TIMEOUT_S)) as response:
        answer = json.load(response)
    assert not answer.get("errors"), f"GraphQL errors: {answer['errors']}"
    return answer["data"]


def _wait_until_serving(ui: Ui, proc: subprocess.Popen) -> None:
    def asset_nodes():
        if proc.poll() is not None:
            pytest.fail(f"adp ui exited with {proc.returncode}:\n{ui.log.read_text()[-3000:]}")
        try:
            return len(graphql(ui, "{ assetNodes { id } }")["assetNodes"])
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    try:
        wait_for(asset_nodes, f"the UI to list its assets on {ui.url}", until=lambda n: isinstance(n, int) and n > 0,
                 timeout=UI_START_TIMEOUT_S)
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{ui.log.read_text()[-3000:]}")


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM `adp ui`'s process group (adp then stops `dagster dev`'s own group); SIGKILL if it hangs."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=bound(300))
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (Debian package `chromium`; .ci/run installs it)"
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(f"{message}; REQUIRE_SERVICES is set, so this fails instead of skipping")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[Ui]:
    """`adp ui` on a fresh data dir with DAYS days of data ending yesterday (UTC), stopped after the module."""
    root = tmp_path_factory.mktemp("adp-ui")
    newest = datetime.now(timezone.utc).date() - timedelta(days=1)
    generate(LandingZones.from_settings(settings.Paths(root)), customers=100, days=DAYS, end=newest, seed=5)
    env = {k: v for k, v in os.environ.items() if not PROFILE_VARIABLES.match(k)}
    env["ADP_DATA_DIR"] = str(root)
    env.pop("ADP_PARTITION_START", None)  # the partitions are the generated days, as for a user
    port = _free_port()
    server = Ui(url=f"http://127.0.0.1:{port}", data_dir=root, newest_day=newest, log=root / "adp-ui.log")
    with server.log.open("wb") as log:
        proc = subprocess.Popen([str(BIN / "adp"), "ui", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_serving(server, proc)
        # The one-time "Join the Dagster community" prompt is recorded as seen on the instance (what
        # its Skip button does), so it cannot pop up over a dialog mid-click on a slow machine.
        assert graphql(server, "mutation { setNuxSeen }")["setNuxSeen"] is True
        yield server
    finally:
        _stop_process_group(proc)


@pytest.fixture()
def page(chromium) -> Iterator[Page]:
    """A page in headless Debian Chromium that dismisses Dagster's one-time community prompt."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            expect.set_options(timeout=STEP_TIMEOUT_MS)
            # A fresh browser on localhost is greeted by "Join the Dagster community"; a person skips it.
            page.add_locator_handler(
                page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
                lambda dialog: dialog.get_by_role("button", name="Skip").click(),
            )
            yield page
        finally:
            browser.close()


class Screenshots:
    """Numbered full-page screenshots, one per step of a walk through the UI."""

    def __init__(self, page: Page, directory: Path):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.page, self.directory, self.count = page, directory, 0

    @contextmanager
    def step(self, name: str):
        """Run one step; then screenshot ``NN-name.png``, or ``NN-name-FAILED.png`` if it raised."""
        self.count += 1
        stem = f"{self.count:02d}-{name}"
        try:
            yield
        except BaseException:
            self.page.screenshot(path=self.directory / f"{stem}-FAILED.png", full_page=True)
            raise
        self.page.screenshot(path=self.directory / f"{stem}.png", full_page=True)


def test_graphql_catalog_lists_every_group_and_the_raw_assets_checks(ui):
    nodes = graphql(ui, """{ assetNodes { assetKey { path } groupName isPartitioned
        assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }""")["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {n["groupName"] for n in nodes} == set(GROUPS)
    assert by_key[ASSET]["groupName"] == ASSET_GROUP and by_key[ASSET]["isPartitioned"]
    checks = {c["name"]: c["blocking"] for c in by_key[ASSET]["assetChecksOrError"]["checks"]}
    assert checks == {"schema_drift": True, "landing_complete": True, "volume_anomaly": False}
    assert {"features/customer_daily", "marts/customer_360", "ml/churn_model"} <= set(by_key)


def test_a_person_materializes_the_newest_partition_in_the_ui_and_sees_its_checks_pass(page, ui):
    shots = Screenshots(page, SCREENSHOTS)
    newest = ui.newest_day.isoformat()

    with shots.step("asset-lineage-shows-every-group"):
        page.goto(f"{ui.url}/asset-groups")
        expect(page.get_by_text("Global asset lineage")).to_be_visible()
        for group in GROUPS:
            expect(page.get_by_title(group, exact=True)).to_be_visible()  # the group tree on the left
            expect(page.locator(f'[data-tooltip="{group}"]')).to_be_visible()  # the group's box in the graph

    with shots.step("asset-page"):
        page.goto(f"{ui.url}/assets/{ASSET}")
        expect(page.get_by_text("Never materialized")).to_be_visible()

    launch = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {' / '.join(ASSET_PATH)}")
    with shots.step("partition-dialog-latest-chosen"):
        page.get_by_role("button", name="Materialize…").click()
        expect(launch).to_be_visible()
        launch.get_by_role("button", name="Latest", exact=True).click()
        expect(launch.get_by_role("textbox")).to_have_value(newest)
        expect(launch).to_contain_text("1 partition")

    with shots.step("run-launched"):
        launch.get_by_role("button", name="Launch 1 run").click()
        toast = page.get_by_role("region", name="Notifications")
        expect(toast).to_contain_text("Launched run")
        toast.get_by_role("link", name="View").click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        expect(page.get_by_text(f"partition: {newest}")).to_be_visible()
    run_id = page.url.rsplit("/", 1)[1]

    with shots.step("run-succeeded"):
        outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
        expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(outcome).to_have_text("Success")

    with shots.step("checks-tab"):
        page.goto(f"{ui.url}/assets/{ASSET}")
        page.get_by_role("tab", name="Checks").click()
        expect(page.get_by_text(f"Checks ({len(CHECKS)})")).to_be_visible()
        for check in CHECKS:
            # the check's entry in the list: its name, then the status of its latest execution
            expect(page.get_by_title(check, exact=True).locator("xpath=..")).to_contain_text("Succeeded")

    for check, described in CHECKS.items():
        with shots.step(f"check-{check}-passed"):
            page.get_by_title(check, exact=True).click()
            expect(page).to_have_url(re.compile(f"checkDetail={check}"))
            expect(page.get_by_text(described).first).to_be_visible()
            expect(page.get_by_text("Evaluation result", exact=True).locator("xpath=..")).to_have_text(
                "Evaluation result Passed", use_inner_text=True)
            expect(page.get_by_text("Partition", exact=True).locator("xpath=..")).to_have_text(
                f"Partition {newest}", use_inner_text=True)

    # the same facts through the GraphQL API
    run = graphql(ui, """query ($id: ID!) { runOrError(runId: $id) { __typename
        ... on Run { status tags { key value } assetSelection { path } } } }""", id=run_id)["runOrError"]
    assert run["__typename"] == "Run" and run["status"] == "SUCCESS", run
    assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == newest
    assert [a["path"] for a in run["assetSelection"]] == [ASSET_PATH]
    materializations = graphql(ui, """query ($key: AssetKeyInput!, $partition: String!) {
        assetOrError(assetKey: $key) { ... on Asset { assetMaterializations(partitions: [$partition]) {
            runId partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }""",
                               key={"path": ASSET_PATH}, partition=newest)["assetOrError"]["assetMaterializations"]
    assert [(m["runId"], m["partition"]) for m in materializations] == [(run_id, newest)]
    row_count = {e["label"]: e.get("intValue") for e in materializations[0]["metadataEntries"]}["dagster/row_count"]
    landed = (ui.data_dir / "landing" / LANDING_FILE.format(day=newest)).read_text().splitlines()
    assert row_count == len(landed) > 0
    for check in CHECKS:
        executions = graphql(ui, """query ($key: AssetKeyInput!, $check: String!, $partition: String) {
            assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 10) {
                runId status partition evaluation { success } } }""",
                             key={"path": ASSET_PATH}, check=check, partition=newest)["assetCheckExecutions"]
        assert executions == [{"runId": run_id, "status": "SUCCEEDED", "partition": newest, "evaluation": {"success": True}}], check
    older = (ui.newest_day - timedelta(days=1)).isoformat()
    assert graphql(ui, """query ($key: AssetKeyInput!, $partition: String) {
        assetCheckExecutions(assetKey: $key, checkName: "schema_drift", partition: $partition, limit: 10) { runId } }""",
                   key={"path": ASSET_PATH}, partition=older)["assetCheckExecutions"] == []
