"""Access levels: each role sees what its policy grants, in its own database, and nothing else."""

import argparse
import re
import shutil
import stat

import duckdb
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.cli import main, ui_command
from ai_data_platform.governance import access, classification, role_databases, role_sandbox
from ai_data_platform.sources.assets import IDENTITY_SCHEMA

IDENTITY_LEVELS = classification.levels(IDENTITY_SCHEMA)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture()
def world(tiny_world, monkeypatch):
    paths, _, _ = tiny_world
    monkeypatch.setenv("ADP_DATA_DIR", str(paths.root))
    return paths


def query(role, sql):
    return access.run_query(role, sql, IDENTITY_LEVELS)


def test_the_policy_omits_direct_and_masks_indirect_pii_below_compliance():
    assert access.ROLES["analyst"].treat("marts.customer_360", "country", "indirect") == access.REDACT
    assert access.ROLES["analyst"].treat("raw.customers", "email", "direct") == access.OMIT
    assert access.ROLES["data_scientist"].treat("staging.events", "device_id", "indirect") == access.PSEUDONYMIZE
    assert access.ROLES["data_scientist"].treat("staging.support_tickets", "body", "indirect") == access.OMIT
    assert access.ROLES["data_scientist"].treat("staging.events", "new_column", None) == access.OMIT
    assert all(access.ROLES["compliance"].treat("identity.customer_pii", "email", level) == access.SHOW for level in ("direct", "indirect", "none", None))
    assert "identity" not in access.ROLES["analyst"].layers + access.ROLES["data_scientist"].layers


def _tables(database):
    con = duckdb.connect(str(database), read_only=True)
    try:
        return {f"{s}.{t}" for s, t in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()


def test_the_pipeline_built_each_roles_database(world):
    directory = access.roles_directory(world.warehouse)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    tables = {}
    for name in access.ROLES:
        database = access.role_database(name, world.warehouse)
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        tables[name] = _tables(database)
    con = warehouse.connect(world.warehouse, read_only=True)
    try:
        views = con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        catalog = con.execute("SELECT treatment FROM meta.role_views WHERE role = 'data_scientist' AND relation = 'staging.customers' AND column_name = 'country'").fetchall()
    finally:
        con.close()
    assert {"marts.customer_360", "features.customer_daily", "meta.role_views"} <= tables["analyst"]
    assert "staging.events" in tables["data_scientist"] and "raw.customers" in tables["compliance"]
    # identity lives only in the regional stores: no role database holds a copy of it
    assert not any(t.startswith("identity.") for ts in tables.values() for t in ts)
    assert not any(t.startswith(("raw.", "staging.", "quarantine.")) for t in tables["analyst"])
    assert not any(t.startswith(("raw.", "quarantine.")) for t in tables["data_scientist"])
    assert not views  # the warehouse keeps no role views (their SQL would hold the role keys)
    con = duckdb.connect(str(access.role_database("analyst", world.warehouse)), read_only=True)
    try:
        analyst_360 = {r[0] for r in con.execute("DESCRIBE marts.customer_360").fetchall()}
    finally:
        con.close()
    assert "country" in analyst_360 and "customer_id" in analyst_360
    assert set(catalog) == {("pseudonymize",)}


def test_an_analyst_sees_marts_with_indirect_pii_redacted(world):
    columns, rows = query("analyst", "SELECT customer_id, country, email_hash, region FROM marts.customer_360 ORDER BY customer_id")
    assert len(rows) == 90 and all(r[0] for r in rows)  # 30 customers x 3 days
    assert {r[1] for r in rows} == {None} and {r[2] for r in rows} == {None}
    assert {r[3] for r in rows} <= {"EU", "US", "APAC"}


def test_an_analyst_reading_the_identity_table_is_refused_by_name(world):
    with pytest.raises(access.AccessDenied) as refused:
        query("analyst", "SELECT email FROM identity.customer_pii")
    message = str(refused.value)
    assert message.startswith("role analyst may not read identity.customer_pii; analyst may read: ")
    assert "marts.customer_360" in message and "features.customer_daily" in message and "staging." not in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM staging.customers",  # a layer the role may not read
        "SELECT * FROM analyst_marts.customer_360",  # a warehouse schema, not an exposed name
        "SELECT * FROM warehouse.identity.customer_pii",  # the base table through its catalog
        "SELECT * FROM warehouse.marts.customer_360",  # an allowed table, but unmasked
        "WITH x AS (SELECT * FROM identity.customer_pii) SELECT * FROM x",
        "SELECT (SELECT max(email) FROM identity.customer_pii) AS leak",
        "SELECT * FROM marts.customer_360 WHERE customer_id IN (SELECT customer_id FROM raw.customers)",
        "SELECT * FROM query('SELECT * FROM identity.customer_pii')",
        "SELECT * FROM query_table('warehouse.identity.customer_pii')",
        "SELECT * FROM read_csv('{landing}/crm/customers/*.csv')",
        "SELECT * FROM read_parquet('{datasets}/*/*/data.parquet')",
        "SELECT * FROM '{landing}/crm/customers/2026-11-18.csv'",
        "SELECT * FROM duckdb_tables()",
        "SELECT 1; SELECT * FROM identity.customer_pii",
        "ATTACH '{warehouse}' AS w2",
        "COPY (SELECT * FROM marts.customer_360) TO '/tmp/x.csv'",
        "SET enable_external_access = true",
    ],
)
def test_bypass_attempts_are_refused(world, sql):
    sql = sql.format(landing=world.default_region_landing("EU"), datasets=world.root / "datasets", warehouse=world.warehouse)
    with pytest.raises(access.AccessDenied, match=r"role analyst may (not|run one SELECT)"):
        query("analyst", sql)


def test_the_sandbox_itself_cannot_read_files_or_unlock(world, tmp_path):
    con = role_sandbox.open_sandbox(access.role_database("analyst", world.warehouse), role_sandbox.Limits(), tmp_path)
    try:
        exposed = role_sandbox.readable(con)
        assert "identity.customer_pii" not in exposed and "marts.customer_360" in exposed
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_csv('{world.default_region_landing('EU')}/crm/customers/2026-11-18.csv')").fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


def test_a_data_scientist_sees_staging_with_indirect_pii_pseudonymized(world):
    _, rows = query("data_scientist", "SELECT customer_id, country, email_hash FROM staging.customers ORDER BY customer_id")
    con = warehouse.connect(world.warehouse, read_only=True)
    try:
        stored = dict(con.execute("SELECT customer_id, country FROM staging.customers").fetchall())
    finally:
        con.close()
    assert len(rows) == len(stored) == 30
    assert all(HEX64.match(country) and country != stored[cid] for cid, country, _ in rows)
    by_country: dict[str, set[str]] = {}
    for cid, token, _ in rows:  # the same country always gets the same pseudonym
        by_country.setdefault(stored[cid], set()).add(token)
    assert all(len(tokens) == 1 for tokens in by_country.values()) and len(by_country) > 1
    columns, _ = query("data_scientist", "SELECT * FROM staging.support_tickets")
    assert "body" not in columns and "customer_id" in columns
    with pytest.raises(access.AccessDenied, match="role data_scientist may not read identity.customer_pii"):
        query("data_scientist", "SELECT * FROM identity.customer_pii")


def test_compliance_reads_the_full_identity_table_wherever_it_lives(world, tmp_path, monkeypatch):
    stores = access.identity_stores()  # one per regional store that holds anything
    assert stores and {s.database for s in stores} <= set(settings.region_store_paths().values())
    _, rows = query("compliance", "SELECT customer_id, email FROM identity.customer_pii")
    assert len(rows) == 30 and all("@" in email for _, email in rows)
    regional = tmp_path / "identity_elsewhere.duckdb"
    con = duckdb.connect(str(regional))
    con.execute("CREATE SCHEMA identity")
    con.execute("CREATE TABLE identity.customer_pii AS SELECT 'C7000001' AS customer_id, 'eu.person@example.eu' AS email")
    con.close()
    monkeypatch.setattr(access, "identity_stores", lambda: [*stores, access.IdentityStore(regional, "identity.customer_pii")])
    _, rows = query("compliance", "SELECT customer_id, email FROM identity.customer_pii ORDER BY customer_id DESC")
    assert len(rows) == 31 and rows[0] == ("C7000001", "eu.person@example.eu")


def test_a_narrowed_policy_leaves_nothing_behind_and_old_warehouse_views_go(world, tmp_path, monkeypatch):
    shutil.copyfile(world.warehouse, tmp_path / "warehouse.duckdb")
    relation = access.Relation("features.customer_daily", {"customer_id": "none"})
    narrowed = access.Role("analyst", "no features", ("marts",), access.ROLES["analyst"].treatment)
    monkeypatch.setitem(access.ROLES, "analyst", narrowed)
    retired = access.role_database("compliance", tmp_path / "warehouse.duckdb")
    retired.parent.mkdir()
    shutil.copyfile(access.role_database("compliance", world.warehouse), retired)
    monkeypatch.delitem(access.ROLES, "compliance")
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    try:
        con.execute("CREATE SCHEMA analyst_marts")
        con.execute("CREATE VIEW analyst_marts.customer_360 AS SELECT sha256(unhex('00') || 'x') AS keyed")
        role_databases.refresh_role_views(con, [access.Relation("marts.customer_360", {}), relation], tmp_path / "warehouse.duckdb")
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    finally:
        con.close()
    assert not views and "analyst_marts" not in schemas
    # marts.customer_360 declared with no classification: analysts get no column of it, so no table
    assert _tables(access.role_database("analyst", tmp_path / "warehouse.duckdb")) == set()
    assert _tables(access.role_database("data_scientist", tmp_path / "warehouse.duckdb")) == {"features.customer_daily"}
    assert not retired.exists()  # a role the policy no longer has keeps no copy of anything


def test_adp_query_prints_rows_or_refuses(world, capsys):
    assert main(["query", "--role", "analyst", "SELECT region, count(*) AS n FROM marts.customer_360 GROUP BY 1 ORDER BY 1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["region", "n"] and "role analyst" in out
    assert main(["query", "--role", "analyst", "SELECT * FROM identity.customer_pii"]) == 3
    assert "access denied: role analyst may not read identity.customer_pii" in capsys.readouterr().err


def test_viewers_get_a_read_only_webserver_without_a_daemon():
    name, cmd = ui_command(argparse.Namespace(host="127.0.0.1", port=3001, read_only=True))
    assert name == "dagster-webserver" and cmd[1:3] == ["-m", "dagster_webserver"] and cmd[-1] == "--read-only"
    name, cmd = ui_command(argparse.Namespace(host="127.0.0.1", port=3000, read_only=False))
    assert cmd[1:4] == ["-m", "dagster", "dev"] and "--read-only" not in cmd
    assert settings.PROJECT_ROOT.joinpath("workspace.yaml").is_file()
