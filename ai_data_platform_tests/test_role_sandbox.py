"""The role sandbox: escape attempts against role queries, with the parser check and without it.

Every attempt runs twice, in this process: as the sandbox's child runs it (``role_sandbox.serve``:
the parser check, then DuckDB in the locked-down connection) and in the sandbox alone, the parser
check bypassed (``open_sandbox`` + ``execute``). Each must be refused with a clear one-line message
or return only what the role may see: no value, name or path from outside the role's database
(canaries: personal data from the regional stores, another role's pseudonyms, the warehouse, the
stores and the other roles' databases) and no byte of any key, in any encoding. A few attempts
also go through the real path (a child process, ``adp query``), with limits small enough to hit.
"""

from __future__ import annotations

import base64
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ai_data_platform import settings, warehouse
from ai_data_platform.cli import main
from ai_data_platform.governance import access, classification, erasure, pii, role_databases, role_sandbox, role_sql
from ai_data_platform.sources.assets import IDENTITY_SCHEMA

IDENTITY_LEVELS = classification.levels(IDENTITY_SCHEMA)
LIMITS = role_sandbox.Limits(
    seconds=3, memory_bytes=128 << 20, threads=1, rows=5000, result_bytes=4 << 20, temp_bytes=32 << 20
)
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass(frozen=True)
class World:
    paths: settings.Paths
    databases: dict[str, Path]
    canaries: dict[str, frozenset[str]]  # role -> strings that role must never see
    key_texts: tuple[str, ...]
    key_bytes: tuple[bytes, ...]
    identity: object  # the compliance role's identity table (pyarrow)


def _key_material() -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """Every key a role could leak (the PII key, each role's key) as raw bytes, its HMAC pads and,
    for a hex key, its digest bytes; and each of those as hex (any case) and base64."""
    keys = [settings.pii_hmac_key(), *(access.role_key(r) for r in access.ROLES)]
    raws: list[bytes] = []
    for key in keys:
        raws += [key.encode(), *pii.hmac_pads(key)]
        if re.fullmatch(r"[0-9a-f]{64}", key):
            raws.append(bytes.fromhex(key))
    texts = {key for key in keys}
    for raw in raws:
        texts |= {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    return tuple(sorted(texts)), tuple(raws)


def _dump(database: Path) -> str:
    """Every name and value of a role database, as text."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        parts = []
        for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
            relation = f"{warehouse.quote(schema)}.{warehouse.quote(table)}"
            cursor = con.execute(f"SELECT * FROM {relation}")
            parts += [schema, table, *(d[0] for d in cursor.description), repr(cursor.fetchall())]
        return "\n".join(parts)
    finally:
        con.close()


def _values(database: Path, sql: str) -> set[str]:
    con = duckdb.connect(str(database), read_only=True)
    try:
        return {str(v) for row in con.execute(sql).fetchall() for v in row if v is not None}
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tiny_world) -> World:
    paths, _, _ = tiny_world
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADP_DATA_DIR", str(paths.root))
        identity = access.identity_table("compliance", IDENTITY_LEVELS)
        stores = [s.database for s in access.identity_stores()]
    databases = {r: access.role_database(r, paths.warehouse) for r in access.ROLES}
    columns = identity.to_pydict()
    personal = {str(v) for v in columns["email"] + columns["name"] + columns["phone"] if v}
    pseudonyms = _values(databases["data_scientist"], "SELECT country, email_hash FROM staging.customers")
    hashes = _values(paths.warehouse, "SELECT email_hash, phone_hash FROM staging.customers")
    places = {str(paths.warehouse), str(paths.root / "landing"), *map(str, stores), "warehouse.duckdb",
              "personal.duckdb", "relations.json", *(str(d) for d in databases.values()),
              *(d.name for d in databases.values())}
    canaries = {}
    for name, database in databases.items():
        visible = _dump(database) + str(database)
        candidates = places | personal | hashes | (pseudonyms if name != "data_scientist" else set())
        if name == "compliance":
            candidates -= personal  # compliance reads identity
        canaries[name] = frozenset(c for c in candidates if len(c) >= 8 and c not in visible)
    texts, raws = _key_material()
    return World(paths, databases, canaries, texts, raws, identity)


@dataclass
class Outcome:
    text: str  # column names and rows, or the error message
    blobs: list[bytes]
    refused: str | None


def _outcome_of(call) -> Outcome:
    try:
        columns, table = call()
    except (role_sql.AccessDenied, role_sql.QueryError) as exc:  # the sandbox's own messages: one line already
        return Outcome(str(exc), [], str(exc))
    except duckdb.Error as exc:  # DuckDB's, which the sandbox's process reports as their first line
        return Outcome(str(exc), [], role_sql.one_line(str(exc)))
    rows = table.to_pylist()
    blobs = [v for row in rows for v in row.values() if isinstance(v, bytes | bytearray)]
    return Outcome(repr(columns) + repr(rows), blobs, None)


def attempt(world: World, role: str, sql: str, *, checked: bool, tmp_path: Path) -> Outcome:
    """``sql`` as ``role``: through the parser check and the sandbox, or the sandbox alone."""
    extras = {access.IDENTITY_RELATION: world.identity} if role == "compliance" else {}
    database = world.databases[role]
    if checked:
        request = {"database": str(database), "sql": sql, "role": role, "temp_directory": str(tmp_path / "spill"),
                   "limits": asdict(LIMITS)}
        return _outcome_of(lambda: role_sandbox.serve(request, extras))

    def bypassed():
        con = role_sandbox.open_sandbox(database, LIMITS, tmp_path / "spill", extras)
        try:
            return role_sandbox.execute(con, sql, LIMITS)
        finally:
            con.close()

    return _outcome_of(bypassed)


def assert_contained(world: World, role: str, sql: str, outcome: Outcome) -> None:
    """Refused with a clear message, or only what ``role`` may see; no key byte either way."""
    if outcome.refused is not None:
        assert outcome.refused.strip() and "\n" not in outcome.refused and len(outcome.refused) < 1200, outcome.refused
    leaked = [c for c in world.canaries[role] if c in outcome.text and c not in sql]
    assert not leaked, f"{role} saw {leaked[:3]} through {sql!r}"
    assert not [k for k in world.key_texts if k in outcome.text], f"key material in the output of {sql!r}"
    assert not [k for k in world.key_bytes for blob in outcome.blobs if k in blob], f"key bytes in a BLOB from {sql!r}"


# -- the escape attempts ----------------------------------------------------------------------------

REFUSED, ALLOWED = "refused", "allowed"

ESCAPES = [
    # CTE names shadowing system views and relations, in and out of scope
    ("SELECT v.sql FROM (WITH duckdb_views AS (SELECT 1) SELECT 1) t, duckdb_views v", REFUSED),
    ("SELECT * FROM (WITH duckdb_tables AS (SELECT 1) SELECT 1) t, duckdb_tables", REFUSED),
    ("SELECT * FROM staging.customers UNION ALL (WITH customers AS (SELECT 1) SELECT * FROM customers)", REFUSED),
    ("WITH duckdb_views AS (SELECT * FROM duckdb_views) SELECT * FROM duckdb_views", REFUSED),
    ("WITH a AS (SELECT * FROM sqlite_master), sqlite_master AS (SELECT 1) SELECT * FROM a", REFUSED),
    ("WITH RECURSIVE duckdb_views AS (SELECT sql FROM duckdb_views UNION ALL SELECT sql FROM duckdb_views) "
     "SELECT * FROM duckdb_views", REFUSED),
    ('WITH "duc\u212adb_views" AS (SELECT 1) SELECT * FROM duckdb_views', REFUSED),  # a Kelvin sign: not DuckDB's "k"
    ("WITH duckdb_views AS (SELECT 1 AS one) SELECT * FROM duckdb_views", ALLOWED),
    ("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t", ALLOWED),
    # catalog listings and system relations
    ("SHOW ALL TABLES", REFUSED),
    ("SHOW TABLES", REFUSED),
    ("SHOW DATABASES", REFUSED),
    ("DESCRIBE identity.customer_pii", REFUSED),
    ("SUMMARIZE staging.customers", REFUSED),
    ("DESCRIBE marts.customer_360", ALLOWED),
    ("SUMMARIZE marts.customer_360", ALLOWED),
    ("SELECT * FROM duckdb_views()", REFUSED),
    ("FROM duckdb_views", REFUSED),
    ("SELECT * FROM duckdb_tables()", REFUSED),
    ("SELECT * FROM duckdb_columns()", REFUSED),
    ("SELECT * FROM duckdb_settings()", REFUSED),
    ("SELECT * FROM duckdb_secrets()", REFUSED),
    ("SELECT * FROM duckdb_extensions()", REFUSED),
    ("SELECT * FROM duckdb_databases()", REFUSED),
    ("SELECT function_name, macro_definition FROM duckdb_functions() WHERE macro_definition IS NOT NULL", REFUSED),
    ("SELECT * FROM duckdb_temporary_files()", REFUSED),
    ("SELECT * FROM information_schema.tables", REFUSED),
    ("SELECT * FROM information_schema.columns", REFUSED),
    ("SELECT * FROM pg_catalog.pg_class", REFUSED),
    ("SELECT * FROM sqlite_master", REFUSED),
    ("SELECT * FROM pragma_database_size()", REFUSED),
    # other relations, however they are named
    ("SELECT * FROM staging.customers", REFUSED),
    ("SELECT * FROM identity.customer_pii", REFUSED),
    ('SELECT * FROM "identity"."customer_pii"', REFUSED),
    ("SELECT * FROM warehouse.marts.customer_360", REFUSED),
    ("SELECT * FROM data_scientist.staging.customers", REFUSED),
    ("SELECT * FROM analyst_marts.customer_360", REFUSED),
    ("SELECT * FROM ｓｔａｇｉｎｇ.customers", REFUSED),  # fullwidth letters
    ('SELECT * FROM "staging\u200b".customers', REFUSED),  # a zero-width space
    ("SELECT /* ; */ * FROM staging.customers -- ; SELECT 1", REFUSED),
    ("SELECT (SELECT max(customer_id) FROM identity.customer_pii) AS leak", REFUSED),
    ("SELECT * FROM marts.customer_360 WHERE customer_id IN (SELECT customer_id FROM raw.customers)", REFUSED),
    ("SELECT * FROM marts.customer_360, LATERAL (SELECT * FROM staging.customers) s", REFUSED),
    ("SELECT customer_id FROM marts.customer_360 UNION SELECT customer_id FROM staging.customers", REFUSED),
    ('SELECT * FROM "' + "a" * 90_000 + '"', REFUSED),  # a name longer than any message should quote
    ("SELECT * FROM request", REFUSED),  # names of the sandbox's Python variables: no replacement scan
    ("SELECT * FROM extras", REFUSED),
    ("SELECT * FROM query('SELECT * FROM staging.customers')", REFUSED),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM staging.customers'))", REFUSED),
    ("SELECT * FROM query_table('staging.customers')", REFUSED),
    ("SELECT * FROM analyst.marts.customer_360 LIMIT 3", ALLOWED),
    ("SELECT * FROM marts.customer_360 PIVOT (count(*) FOR region IN ('EU', 'US', 'APAC'))", ALLOWED),
    ("SELECT ';ATTACH ''{warehouse}'' AS w; --' AS text", ALLOWED),
    ("SELECT count(*) AS n FROM marts.customer_360 WHERE segment = ';DROP TABLE marts.customer_360;'", ALLOWED),
    ("SELECT 1 AS one -- ; ATTACH '{warehouse}' AS w", ALLOWED),
    ("SELECT /* ; SELECT * FROM staging.customers; */ 1 AS one", ALLOWED),
    # files
    ("SELECT * FROM '{landing}/crm/customers/2026-11-18.csv'", REFUSED),
    ("SELECT * FROM read_csv('{landing}/crm/customers/*.csv')", REFUSED),
    ("SELECT * FROM read_text('{warehouse}')", REFUSED),
    ("SELECT * FROM read_blob('{data_scientist}')", REFUSED),
    ("SELECT * FROM read_blob('{analyst}')", REFUSED),
    ("SELECT * FROM read_text('{roles}/relations.json')", REFUSED),
    ("SELECT * FROM read_json('{root}/audit/audit.jsonl')", REFUSED),
    ("SELECT * FROM read_parquet('{root}/datasets/**/*.parquet')", REFUSED),
    ("SELECT * FROM glob('{root}/**')", REFUSED),
    ("SELECT * FROM parquet_metadata('{root}/datasets/x.parquet')", REFUSED),
    ("SELECT * FROM read_duckdb('{warehouse}', table_name := 'customers')", REFUSED),
    ("SELECT * FROM enable_profiling(save_location := '{root}/profile.json', format := 'json')", REFUSED),
    # settings, environment, extensions, other databases
    ("SELECT getenv('ADP_PII_HMAC_KEY')", REFUSED),
    ("SELECT current_setting('temp_directory') AS t", ALLOWED),
    ("SET enable_external_access = true", REFUSED),
    ("SET lock_configuration = false", REFUSED),
    ("RESET ALL", REFUSED),
    ("RESET memory_limit", REFUSED),
    ("SET VARIABLE leak = (SELECT 1)", REFUSED),
    ("SET memory_limit = '64GB'", REFUSED),
    ("PRAGMA database_list", REFUSED),
    ("PRAGMA table_info('staging.customers')", REFUSED),
    ("CALL duckdb_tables()", REFUSED),
    ("INSTALL httpfs", REFUSED),
    ("LOAD httpfs", REFUSED),
    ("ATTACH '{warehouse}' AS w (READ_ONLY)", REFUSED),
    ("ATTACH '{data_scientist}' AS ds (READ_ONLY)", REFUSED),
    ("ATTACH ':memory:' AS scratch", REFUSED),
    ("DETACH analyst", REFUSED),
    ("USE system", REFUSED),
    ("COPY marts.customer_360 TO '{root}/out.csv'", REFUSED),
    ("COPY (SELECT 1) TO '/tmp/adp-role-escape.parquet' (FORMAT parquet)", REFUSED),
    ("EXPORT DATABASE '{root}/export'", REFUSED),
    ("CHECKPOINT", REFUSED),
    ("CREATE TABLE marts.escape AS SELECT 1 AS x", REFUSED),
    ("CREATE MACRO escape() AS 1", REFUSED),
    ("CREATE SECRET escape (TYPE s3, KEY_ID 'a', SECRET 'b')", REFUSED),
    ("DROP TABLE marts.customer_360", REFUSED),
    ("INSERT INTO marts.customer_360 SELECT * FROM marts.customer_360", REFUSED),
    ("VACUUM", REFUSED),
    ("EXPLAIN SELECT * FROM marts.customer_360", REFUSED),
    ("PIVOT marts.customer_360 ON region USING count(*)", REFUSED),
    # several statements
    ("SELECT 1; SELECT * FROM identity.customer_pii", REFUSED),
    ("SELECT 1; ATTACH '{warehouse}' AS w", REFUSED),
    ("PREPARE p AS SELECT * FROM staging.customers; EXECUTE p", REFUSED),
    ("SELECT 1;;", ALLOWED),
    # size and depth
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, REFUSED),
    ("SELECT * FROM " + "(SELECT * FROM " * 1500 + "marts.customer_360" + ") t" * 1500, REFUSED),
    ("".join("WITH c AS (" for _ in range(2500)) + "SELECT 1" + ") SELECT * FROM c" * 2500, REFUSED),
    ("SELECT 1 AS x" + " " * role_sql.MAX_SQL_CHARS, REFUSED),
    ("SELECT 'x\x00' AS nul", REFUSED),
    # memory, time, rows (bounded by DuckDB inside this process; the child process tests below go further)
    ("SELECT list(range) FROM range(50000000)", REFUSED),
    ("SELECT count(*) FROM range(1000000000000)", REFUSED),
    ("SELECT * FROM range(1000000)", REFUSED),
]


def _sql(world: World, template: str) -> str:
    roles = access.roles_directory(world.paths.warehouse)
    values = {"warehouse": world.paths.warehouse, "root": world.paths.root, "roles": roles,
              "landing": world.paths.default_region_landing("EU"), **{r: d for r, d in world.databases.items()}}
    if "{" not in template or len(template) > 2000:
        return template
    return template.format(**{k: str(v) for k, v in values.items()})


def test_there_are_at_least_forty_escape_attempts():
    assert len([e for e in ESCAPES if e[1] == REFUSED]) >= 40


@pytest.mark.parametrize(("template", "expected"), ESCAPES, ids=[f"{i:02d}" for i in range(len(ESCAPES))])
def test_an_escape_attempt_is_refused_or_contained(world, tmp_path, template, expected):
    sql = _sql(world, template)
    checked = attempt(world, "analyst", sql, checked=True, tmp_path=tmp_path)
    assert_contained(world, "analyst", sql, checked)
    assert (checked.refused is None) == (expected == ALLOWED), checked.refused
    alone = attempt(world, "analyst", sql, checked=False, tmp_path=tmp_path)
    assert_contained(world, "analyst", sql, alone)


KEY_HUNT = [
    "SELECT sql FROM duckdb_views()",
    "SELECT * FROM duckdb_functions() WHERE macro_definition IS NOT NULL",
    "SELECT sql FROM sqlite_master",
    "SELECT * FROM information_schema.views",
    "SELECT * FROM information_schema.routines",
    "SELECT * FROM read_blob('{data_scientist}')",
    "SELECT * FROM read_blob('{compliance}')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM staging.customers",
]


@pytest.mark.parametrize("role", sorted(access.ROLES))
@pytest.mark.parametrize("template", KEY_HUNT)
def test_no_role_finds_a_key_even_past_the_parser(world, tmp_path, role, template):
    sql = _sql(world, template)
    for checked in (True, False):
        assert_contained(world, role, sql, attempt(world, role, sql, checked=checked, tmp_path=tmp_path))


def _table_function_calls() -> list[str]:
    """One call of every table function DuckDB offers (first overload's first parameter, or none),
    aimed at the warehouse where it takes a path or a query."""
    con = duckdb.connect(config={"autoload_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT function_name, any_value(parameter_types[1]) FROM duckdb_functions() WHERE function_type = 'table' "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    argument = {None: "", "BIGINT": "1", "BOOLEAN": "true", "ANY[]": "['{warehouse}']", "JSON": "'{{}}'"}
    calls = []
    for name, first in rows:
        text = "'SELECT * FROM staging.customers'" if name.startswith(("query", "json_exec")) else "'{warehouse}'"
        arg = argument.get(first, text)
        calls.append(f"SELECT * FROM {name}({arg})")
    return calls


TABLE_FUNCTION_CALLS = _table_function_calls()


@pytest.mark.parametrize("template", TABLE_FUNCTION_CALLS, ids=lambda c: c.split()[3].split("(")[0])
def test_every_table_function_is_refused_or_contained(world, tmp_path, template):
    sql = _sql(world, template)
    checked = attempt(world, "analyst", sql, checked=True, tmp_path=tmp_path)
    assert_contained(world, "analyst", sql, checked)
    name = template.split(" FROM ")[1].split("(")[0]
    if name not in role_sql.ALLOWED_TABLE_FUNCTIONS:
        assert checked.refused == checked.text and "may not call table function" in checked.refused
    assert_contained(world, "analyst", sql, attempt(world, "analyst", sql, checked=False, tmp_path=tmp_path))


def test_the_canaries_catch_a_leak(world, tmp_path):
    """The containment check is not vacuous: the unsandboxed warehouse fails it at once."""
    con = duckdb.connect(str(world.paths.warehouse), read_only=True)
    try:
        leak = Outcome(repr(con.execute("SELECT email_hash FROM staging.customers").fetchall()), [], None)
    finally:
        con.close()
    with pytest.raises(AssertionError, match="analyst saw"):
        assert_contained(world, "analyst", "SELECT 1", leak)
    key = Outcome(pii.hmac_pads(access.role_key("data_scientist"))[0].hex(), [], None)
    with pytest.raises(AssertionError, match="key material"):
        assert_contained(world, "analyst", "SELECT 1", key)
    seen = attempt(world, "analyst", "SELECT customer_id FROM marts.customer_360", checked=True, tmp_path=tmp_path)
    assert seen.refused is None and "C00000" in seen.text


# -- the parser check on its own: CTE scope, whatever the nesting ----------------------------------

_NAMES = ("marts.a", "staging.b", "c0", "c1", "C1", "main.c0")


@st.composite
def _queries(draw, depth=0):
    """A SELECT of one column ``v`` built from CTEs, subqueries, unions and recursive CTEs over
    names that are sometimes CTEs in scope and sometimes real tables of the same name."""
    kind = draw(st.sampled_from(["from", "with", "union", "sub", "recursive"] if depth < 3 else ["from"]))
    if kind == "from":
        return f"SELECT v FROM {draw(st.sampled_from(_NAMES))}"
    if kind == "with":
        names = draw(st.lists(st.sampled_from(["c0", "c1"]), min_size=1, max_size=2, unique=True))
        ctes = ", ".join(f"{n} AS ({draw(_queries(depth + 1))})" for n in names)
        return f"WITH {ctes} {draw(_queries(depth + 1))}"
    if kind == "union":
        return f"{draw(_queries(depth + 1))} UNION ALL ({draw(_queries(depth + 1))})"
    if kind == "sub":
        return f"SELECT v FROM ({draw(_queries(depth + 1))}) t"
    name = draw(st.sampled_from(["c0", "c1"]))
    return (f"WITH RECURSIVE {name}(v) AS (({draw(_queries(depth + 1))}) UNION ALL (SELECT v FROM {name} WHERE false)) "
            f"{draw(_queries(depth + 1))}")


@pytest.fixture(scope="module")
def trap():
    """Real tables named like the CTEs and a forbidden relation, all holding SECRET; the one
    readable relation holds ok."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    con.execute("CREATE TABLE marts.a AS SELECT 'ok' AS v")
    for table in ("staging.b", "main.c0", "main.c1"):
        con.execute(f"CREATE TABLE {table} AS SELECT 'SECRET' AS v")
    yield con
    con.close()


@hypothesis_settings(max_examples=150)
@given(sql=_queries())
def test_a_statement_the_parser_passes_reads_only_readable_relations(trap, sql):
    try:
        role_sql.check(trap, "analyst", sql, ["marts.a"], "memory")
    except (role_sql.AccessDenied, role_sql.QueryError):
        return
    try:
        rows = trap.execute(sql).fetchall()
    except duckdb.Error:
        return
    assert ("SECRET",) not in rows, sql


def test_the_generated_statements_reach_both_verdicts(trap):
    passed = "WITH c0 AS (SELECT v FROM marts.a) SELECT v FROM (WITH c1 AS (SELECT v FROM c0) SELECT v FROM c1) t"
    role_sql.check(trap, "analyst", passed, ["marts.a"], "memory")
    assert trap.execute(passed).fetchall() == [("ok",)]
    leaking = (
        "WITH c0 AS (SELECT v FROM c0) SELECT v FROM c0",  # a CTE's body reads the real c0
        "SELECT v FROM (WITH c0 AS (SELECT v FROM marts.a) SELECT v FROM c0) t UNION ALL (SELECT v FROM c0)",
        "WITH RECURSIVE c1(v) AS ((SELECT v FROM c1) UNION ALL (SELECT v FROM c1 WHERE false)) SELECT v FROM c1",
    )
    for sql in leaking:
        assert ("SECRET",) in trap.execute(sql).fetchall()
        with pytest.raises(role_sql.AccessDenied, match="may not read"):
            role_sql.check(trap, "analyst", sql, ["marts.a"], "memory")


# -- what the role databases hold -------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(access.ROLES))
def test_a_role_database_holds_no_key_no_view_no_macro(world, role):
    database = world.databases[role]
    con = duckdb.connect(str(database), read_only=True)
    try:
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        macros = con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE database_name = current_database() AND NOT internal"
        ).fetchall()
        stored_sql = " ".join(r[0] or "" for r in con.execute("SELECT sql FROM duckdb_tables()").fetchall())
    finally:
        con.close()
    assert views == [] and macros == []
    data = database.read_bytes()
    assert not [k for k in world.key_bytes if k in data]
    assert not [k for k in world.key_texts if k.encode() in data or k in stored_sql]


def test_pseudonyms_are_the_role_keyed_hmac_of_the_value(world):
    sql = "SELECT customer_id || '/' || _partition_date, country FROM staging.customers"
    stored, seen = ({}, {})
    for database, into in ((world.paths.warehouse, stored), (world.databases["data_scientist"], seen)):
        con = duckdb.connect(str(database), read_only=True)
        try:
            into.update(con.execute(sql).fetchall())
        finally:
            con.close()
    key = access.role_key("data_scientist")
    assert seen and seen == {k: pii.hmac_hex(key, v) for k, v in stored.items()}


def test_a_rebuild_removes_what_the_warehouse_lost(world, tmp_path, monkeypatch):
    """Erasure and retention rebuild the role databases: they are copies of warehouse rows."""
    paths = settings.Paths(tmp_path / "adp")
    paths.root.mkdir()
    (paths.root / access.ROLES_DIRECTORY).mkdir()
    paths.warehouse.write_bytes(world.paths.warehouse.read_bytes())
    source = access.roles_directory(world.paths.warehouse)
    for f in source.glob("*.duckdb"):
        (paths.root / access.ROLES_DIRECTORY / f.name).write_bytes(f.read_bytes())
    manifest = (source / role_databases.MANIFEST).read_text()
    (paths.root / access.ROLES_DIRECTORY / role_databases.MANIFEST).write_text(manifest)
    con = warehouse.connect(paths.warehouse)
    try:
        subject = con.execute("SELECT min(customer_id) FROM marts.customer_360").fetchall()[0][0]
        removed = con.execute("DELETE FROM marts.customer_360 WHERE customer_id = ?", [subject]).fetchall()[0][0]
    finally:
        con.close()
    assert removed > 0
    lost = role_databases.rebuild(paths)
    assert lost == {f"{r}.duckdb": removed for r in access.ROLES}
    for name in access.ROLES:
        con = duckdb.connect(str(access.role_database(name, paths.warehouse)), read_only=True)
        try:
            left = con.execute("SELECT count(*) FROM marts.customer_360 WHERE customer_id = ?", [subject]).fetchall()
            assert left == [(0,)]
        finally:
            con.close()
    assert role_databases.ERASURE_TARGET in {t.name for t in erasure.registered_targets()}


# -- the real path: a child process, `adp query` ----------------------------------------------------


@pytest.fixture()
def env(world, monkeypatch):
    monkeypatch.setenv("ADP_DATA_DIR", str(world.paths.root))
    return world


def test_the_child_gets_no_secret(monkeypatch):
    monkeypatch.setenv("ADP_PII_HMAC_KEY", "a-secret-the-sandbox-must-not-hold")
    child = role_sandbox._child_environment()
    assert "ADP_PII_HMAC_KEY" not in child and not any("a-secret" in v for v in child.values())


@pytest.mark.parametrize(
    ("sql", "limits", "message"),
    [
        ("SELECT length(repeat([1], 1000000000))", role_sandbox.Limits(memory_bytes=64 << 20, headroom_bytes=512 << 20),
         "(?i)memory"),
        ("SELECT count(*) FROM range(1000000000000)", role_sandbox.Limits(seconds=1), "(?i)time"),
        ("SELECT 1", role_sandbox.Limits(seconds=0.05, start_seconds=0.05), "ran longer than 0.05 s"),
        ("SELECT * FROM range(100)", role_sandbox.Limits(rows=10), "more than 10 rows"),
    ],
    ids=["memory", "time", "killed", "rows"],
)
def test_a_query_past_a_limit_is_stopped_with_a_clear_message(env, sql, limits, message):
    with pytest.raises(access.QueryError, match=message) as stopped:
        access.run_query("analyst", sql, IDENTITY_LEVELS, limits=limits)
    assert "\n" not in str(stopped.value)


@pytest.mark.parametrize(
    ("sql", "code", "err"),
    [
        ("SELECT v.sql FROM (WITH duckdb_views AS (SELECT 1) SELECT 1) t, duckdb_views v", 3,
         "access denied: role analyst may not read duckdb_views"),
        ("SHOW ALL TABLES", 3, "access denied: role analyst may not list the catalog"),
        ("ATTACH 'x.duckdb' AS x", 3, "access denied: role analyst may run one SELECT statement, got ATTACH"),
        ("SELECT no_such_column FROM marts.customer_360", 2, "query failed: Binder Error"),
        ("SELEKT 1", 3, "access denied: cannot parse the query"),
        ('SELECT "\x1b[2J\x1b[31m" FROM marts.customer_360', 2, "query failed: Binder Error"),  # terminal codes
        ("SELECT 1 WHERE " + " OR ".join(["true"] * 30_000), 2, "adp query: argument SQL: expected one SQL statement of at most"),
    ],
)
def test_adp_query_refusals_and_errors_are_one_line(env, capsys, sql, code, err):
    assert main(["query", "--role", "analyst", sql]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(err) and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err[:-1].isprintable()
    assert not [k for k in env.key_texts if k in captured.err + captured.out]


def test_a_role_query_reads_its_relations_through_the_child(env):
    sql = "SELECT country, count(*) AS n FROM staging.customers GROUP BY 1"
    columns, rows = access.run_query("data_scientist", sql, IDENTITY_LEVELS)
    assert columns == ["country", "n"] and rows and all(HEX64.fullmatch(c) for c, _ in rows)
    assert sum(n for _, n in rows) == 30
