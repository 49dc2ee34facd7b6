"""Compile a source contract into the SQL that stages one day of it.

For one table and day the staging step:

1. drops exact duplicates (every landed column equal) and counts them;
2. parses each column to its contract type with ``TRY_CAST``;
3. judges every remaining row against the rules in a fixed order, keeping the first failure:
   ``malformed_row`` → ``not_null`` → ``invalid_id`` (the key or customer reference too long,
   holding a control character, or a JSON object or array) → ``invalid_timestamp`` (event time
   unparseable or outside [2000-01-01, day + 2 days)) → ``invalid_<type>`` (other unparseable
   values; ``NaN``, ``Infinity`` and overflowing numbers are unparseable) → ``accepted_values`` →
   ``non_negative`` → ``out_of_range`` (a number above its column's ``max_value``, e.g. an amount
   above ``contracts.MAX_AMOUNT``) → ``known_customer`` → ``unique_key``;
4. writes passing rows to ``staging.<table>`` and failing rows to ``quarantine.<table>`` with the
   file, row number, rule, column and raw value.

So for every partition: raw rows = staged + quarantined + duplicates (row conservation).
Tables holding personal data (CRM customers and support tickets) reach the warehouse already
pseudonymized (``governance/personal_data.py``): their raw rows carry HMAC keys instead of names,
emails and phones, so staging judges ``not_null`` on the keys and passes them on without hashing
again. Their personal values are joined back in only for the outputs that live in the regional
stores: ``identity.customer_pii`` and ``quarantine.<table>_personal`` (raw values and records of
rejected rows). Pure functions returning SQL text: no connection.
"""

from __future__ import annotations

from datetime import date

from ai_data_platform.governance.personal_data import (
    SUBJECT_EMAIL_COLUMN,
    hash_column,
    holds_personal_data,
    is_regional,
    regional_columns,
    warehouse_raw_columns,
)
from ai_data_platform.governance.pii import normalize_email_sql
from ai_data_platform.sources.contracts import (
    CUSTOMERS,
    EARLIEST_VALID_TIME,
    SUPPORT_TICKETS,
    Column,
    SourceTable,
)
from ai_data_platform.sources.value_grammar import id_sql, number_sql
from ai_data_platform.warehouse import quote, sql_literal, timestamp_from_text

JUDGED_TEMP = "_staging_judged"
QUARANTINE_COLUMNS = (
    ("_partition_date", "DATE"),
    ("_file", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("rule", "VARCHAR"),
    ("column_name", "VARCHAR"),
    ("raw_value", "VARCHAR"),
    ("raw_record", "VARCHAR"),
)
LINEAGE_COLUMNS = (("_partition_date", "DATE"), ("_file", "VARCHAR"), ("_row_number", "BIGINT"))
_TYPE_RULES = {"TIMESTAMP": "invalid_timestamp", "DOUBLE": "invalid_number", "BOOLEAN": "invalid_boolean", "BIGINT": "invalid_number"}


def raw_table(t: SourceTable) -> str:
    return f"raw.{t.name}"


def staging_table(t: SourceTable) -> str:
    return f"staging.{t.name}"


def quarantine_table(t: SourceTable) -> str:
    return f"quarantine.{t.name}"


def typed(name: str) -> str:
    return quote(f"__typed_{name}")


def id_columns(t: SourceTable) -> tuple[str, ...]:
    """The columns holding ids the ``invalid_id`` rule judges: the key and the customer reference
    (a personal one is only in the regional stores, its HMAC in the warehouse)."""
    names = dict.fromkeys(n for n in (t.key, t.customer_ref) if n is not None and not is_regional(t, n))
    return tuple(names)


# ---------------------------------------------------------------- DDL


def _add_database_columns(t: SourceTable, table: str, typed_columns: bool) -> str:
    """``ALTER`` statements giving a table created before ``t.database_columns`` existed those columns."""
    return "".join(
        f"; ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(c.name)} {c.dtype if typed_columns else 'VARCHAR'}"
        for c in t.database_columns
    )


def raw_value_columns(t: SourceTable) -> tuple[str, ...]:
    """The value columns of ``raw.<t>`` in the warehouse (pseudonymized for tables holding personal data)."""
    return warehouse_raw_columns(t)


def judged_columns(t: SourceTable) -> tuple[Column, ...]:
    """The contract columns staging parses from the warehouse's raw table (personal ones are not there)."""
    return tuple(c for c in t.raw_columns if not is_regional(t, c.name))


def raw_ddl(t: SourceTable) -> str:
    cols = ", ".join(f"{quote(c)} VARCHAR" for c in raw_value_columns(t))
    return (
        f"CREATE TABLE IF NOT EXISTS {raw_table(t)} ({cols}, _partition_date DATE, "
        "_file VARCHAR, _row_number BIGINT, _raw_line VARCHAR, _loaded_at TIMESTAMP)"
    ) + _add_database_columns(t, raw_table(t), typed_columns=False)


def staging_columns(t: SourceTable) -> list[tuple[str, str]]:
    """Name and type of every staging column: contract columns minus direct PII, plus keys."""
    cols: list[tuple[str, str]] = [(c.name, c.dtype) for c in judged_columns(t)]
    if t is CUSTOMERS:
        cols += [("email_hash", "VARCHAR"), ("phone_hash", "VARCHAR")]
    if t is SUPPORT_TICKETS:
        cols += [("email_hash", "VARCHAR"), ("customer_id", "VARCHAR")]
    cols += [*LINEAGE_COLUMNS, ("_available_at", "TIMESTAMP")]
    return cols


def staging_ddl(t: SourceTable) -> str:
    cols = ", ".join(f"{quote(n)} {ty}" for n, ty in staging_columns(t))
    return f"CREATE TABLE IF NOT EXISTS {staging_table(t)} ({cols})" + _add_database_columns(
        t, staging_table(t), typed_columns=True
    )


def quarantine_ddl(t: SourceTable) -> str:
    cols = ", ".join(f"{n} {ty}" for n, ty in QUARANTINE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {quarantine_table(t)} ({cols})"


# ---------------------------------------------------------------- judging


def _violation(rule: str, column: str | None, raw_expr: str) -> str:
    col = sql_literal(column)
    return f"{{'rule': '{rule}', 'column_name': {col}, 'raw_value': CAST({raw_expr} AS VARCHAR)}}"


def _rule_cases(t: SourceTable, day: date) -> list[tuple[str, str]]:
    """(condition, violation struct) pairs in rule order; the first true condition wins."""
    cases: list[tuple[str, str]] = [("_raw_line IS NOT NULL", _violation("malformed_row", None, "_raw_line"))]
    for c in t.columns:
        if c.required and is_regional(t, c.name):
            # only the HMAC is in the warehouse: NULL exactly when the value was missing or blank
            cases.append((f"({quote(hash_column(c.name))} IS NULL)", _violation("not_null", c.name, "NULL")))
        elif c.required:
            raw = quote(c.name)
            cases.append((f"({raw} IS NULL OR trim({raw}) = '')", _violation("not_null", c.name, raw)))
    for name in id_columns(t):
        condition = f"({typed(name)} IS NOT NULL AND NOT {id_sql(typed(name))})"
        cases.append((condition, _violation("invalid_id", name, quote(name))))
    time_raw, time_typed = quote(t.time_column), typed(t.time_column)
    upper = f"(DATE {sql_literal(day.isoformat())} + INTERVAL 2 DAY)"
    cases.append(
        (
            f"({time_raw} IS NOT NULL AND ({time_typed} IS NULL "
            f"OR {time_typed} < TIMESTAMP '{EARLIEST_VALID_TIME}' OR {time_typed} >= {upper}))",
            _violation("invalid_timestamp", t.time_column, time_raw),
        )
    )
    for c in judged_columns(t):
        if c.dtype != "VARCHAR" and c.name != t.time_column:
            raw = quote(c.name)
            cases.append(
                (
                    f"({raw} IS NOT NULL AND trim({raw}) <> '' AND {typed(c.name)} IS NULL)",
                    _violation(_TYPE_RULES[c.dtype], c.name, raw),
                )
            )
    for c in t.columns:
        if c.accepted_values:
            allowed = ", ".join(sql_literal(v) for v in c.accepted_values)
            cases.append(
                (
                    f"({typed(c.name)} IS NOT NULL AND {typed(c.name)} NOT IN ({allowed}))",
                    _violation("accepted_values", c.name, quote(c.name)),
                )
            )
    for c in t.columns:
        if c.non_negative:
            cases.append((f"({typed(c.name)} < 0)", _violation("non_negative", c.name, quote(c.name))))
    for c in t.columns:
        if c.max_value is not None:
            cases.append((f"({typed(c.name)} > {max_value_sql(c)})", _violation("out_of_range", c.name, quote(c.name))))
    if t.customer_ref is not None:
        ref_value = "NULL" if is_regional(t, t.customer_ref) else quote(t.customer_ref)  # personal: regional quarantine
        cases.append(("(_known._known_id IS NULL)", _violation("known_customer", t.customer_ref, ref_value)))
    return cases


def max_value_sql(c: Column) -> str:
    """SQL: a column's ``max_value`` as the exact DOUBLE the stream's judge compares with."""
    return f"CAST('{float(c.max_value)!r}' AS DOUBLE)"


def _typed_expr(c_name: str, dtype: str) -> str:
    raw = quote(c_name)
    if dtype == "VARCHAR":
        return f"nullif(trim({raw}), '')"
    if dtype == "TIMESTAMP":
        return timestamp_from_text(f"nullif(trim({raw}), '')")
    if dtype == "DOUBLE":
        return number_sql(f"nullif(trim({raw}), '')")
    return f"TRY_CAST(nullif(trim({raw}), '') AS {dtype})"


def _known_customers_cte(t: SourceTable, day: date) -> tuple[str, str]:
    """A CTE of customers known as of ``day`` and the join condition to it."""
    d = sql_literal(day.isoformat())
    if t is SUPPORT_TICKETS:
        email_hash = quote(hash_column("customer_email"))
        cte = (
            "_known AS (SELECT email_hash AS _known_email_hash, arg_max(customer_id, updated_at) AS _known_id "
            f"FROM {staging_table(CUSTOMERS)} WHERE _partition_date <= DATE {d} GROUP BY email_hash)"
        )
        return cte, f"_known._known_email_hash = {email_hash}"
    cte = (
        "_known AS (SELECT DISTINCT customer_id AS _known_id "
        f"FROM {staging_table(CUSTOMERS)} WHERE _partition_date <= DATE {d})"
    )
    return cte, f"_known._known_id = {typed('customer_id')}"


def judged_sql(t: SourceTable, day: date) -> str:
    """Every raw row of ``day`` with ``_copy`` (1 = first of exact duplicates) and ``_violation``.

    ``_violation`` is NULL for rows that pass every rule, else a struct (rule, column_name,
    raw_value) for the first rule they fail; ``unique_key`` is applied over passing rows.
    """
    d = sql_literal(day.isoformat())
    all_cols = ", ".join(quote(c) for c in (*raw_value_columns(t), "_raw_line"))
    typed_cols = ", ".join(f"{_typed_expr(c.name, c.dtype)} AS {typed(c.name)}" for c in judged_columns(t))
    ctes = [
        f"_src AS (SELECT *, row_number() OVER (PARTITION BY {all_cols} ORDER BY _row_number) AS _copy "
        f"FROM {raw_table(t)} WHERE _partition_date = DATE {d})",
        f"_typed AS (SELECT _src.*, {typed_cols} FROM _src)",
    ]
    join = ""
    if t.customer_ref is not None:
        cte, cond = _known_customers_cte(t, day)
        ctes.append(cte)
        join = f"LEFT JOIN _known ON {cond}"
    cases = "\n".join(f"    WHEN {cond} THEN {struct}" for cond, struct in _rule_cases(t, day))
    known_id = ", _known._known_id AS _known_customer_id" if t is SUPPORT_TICKETS else ""
    ctes.append(
        f"_rules AS (SELECT _typed.*{known_id}, CASE\n{cases}\n    ELSE NULL END AS _violation "
        f"FROM _typed {join} WHERE _copy = 1)"
    )
    key = typed(t.key)
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        "SELECT * REPLACE (CASE WHEN _violation IS NULL AND _key_rank > 1 THEN "
        + _violation("unique_key", t.key, quote(t.key))
        + " ELSE _violation END AS _violation) FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY _violation IS NULL, {key} ORDER BY _row_number) AS _key_rank "
        "FROM _rules)\n"
        f"UNION ALL BY NAME SELECT *, NULL AS _violation, NULL AS _key_rank FROM _typed WHERE _copy > 1"
    )


# ---------------------------------------------------------------- outputs (from the judged temp table)


def _staged_value(t: SourceTable, name: str) -> str:
    if t is CUSTOMERS and name in ("email_hash", "phone_hash"):
        return quote(name)  # computed once, at the raw load
    if t is SUPPORT_TICKETS and name == "email_hash":
        return quote(hash_column("customer_email"))
    if t is SUPPORT_TICKETS and name == "customer_id":
        return "_known_customer_id"
    if name in ("_partition_date", "_file", "_row_number"):
        return name
    if name == "_available_at":
        # The point-in-time "load time": a daily export is available once its day has ended;
        # a streamed event as soon as the collector received it (never later than its export).
        export_end = "CAST(_partition_date + INTERVAL 1 DAY AS TIMESTAMP)"
        if "received_at" in t.column_names:
            return f"least(coalesce({typed('received_at')}, {export_end}), {export_end})"
        return export_end
    return typed(name)


def staged_select(t: SourceTable) -> str:
    cols = ", ".join(f"{_staged_value(t, n)} AS {quote(n)}" for n, _ in staging_columns(t))
    return f"SELECT {cols} FROM {JUDGED_TEMP} WHERE _copy = 1 AND _violation IS NULL ORDER BY _row_number"


def _record_json(names, value) -> str:
    return "CAST(to_json({" + ", ".join(f"'{c}': {value(c)}" for c in names) + "}) AS VARCHAR)"


def quarantine_select(t: SourceTable) -> str:
    """The rejected rows for ``quarantine.<t>``. For a table holding personal data, no personal value
    is kept here: the raw value of a personal column and the record of an unsplittable line are NULL,
    the raw record lists the non-personal columns only (the full ones: :func:`quarantine_personal_select`)."""
    raw_value, record = "_violation.raw_value", _record_json(t.raw_column_names, quote)
    if holds_personal_data(t):
        personal = ", ".join(sql_literal(c.name) for c in regional_columns(t))
        raw_value = f"CASE WHEN _raw_line IS NOT NULL OR _violation.column_name IN ({personal}) THEN NULL ELSE _violation.raw_value END"
        record = f"CASE WHEN _raw_line IS NOT NULL THEN NULL ELSE {_record_json([c.name for c in judged_columns(t)], quote)} END"
    else:
        record = f"coalesce(_raw_line, {record})"
    return (
        "SELECT _partition_date, _file, _row_number, _violation.rule AS rule, "
        f"_violation.column_name AS column_name, {raw_value} AS raw_value, {record} AS raw_record "
        f"FROM {JUDGED_TEMP} WHERE _copy = 1 AND _violation IS NOT NULL ORDER BY _row_number"
    )


def _with_personal(personal_rows: str) -> str:
    """The judged rows joined with their personal values (``p.*``) by row key."""
    return (
        f"FROM {JUDGED_TEMP} j LEFT JOIN ({personal_rows}) p "
        "ON p._partition_date = j._partition_date AND p._row_number = j._row_number WHERE j._copy = 1"
    )


def quarantine_personal_select(t: SourceTable, personal_rows: str) -> str:
    """Rows of ``quarantine.<t>_personal`` (regional store): each rejected row's raw value and raw
    record with its personal values, plus the subject keys it is routed by. ``personal_rows``:
    the day's ``raw.<t>_personal`` rows."""

    def value(c: str) -> str:
        return f"p.{quote(c)}" if is_regional(t, c) else f"j.{quote(c)}"

    cases = " ".join(f"WHEN {sql_literal(c.name)} THEN p.{quote(c.name)}" for c in regional_columns(t))
    subject = "j.customer_id AS customer_id" if t is CUSTOMERS else f"j.{quote(t.key)} AS {quote(t.key)}"
    email_hash = f"j.{quote(hash_column(SUBJECT_EMAIL_COLUMN[t.name]))}"
    return (
        f"SELECT {subject}, {email_hash} AS email_hash, j._violation.rule AS rule, j._violation.column_name AS column_name, "
        f"CASE WHEN j._raw_line IS NOT NULL THEN p._raw_line ELSE CASE j._violation.column_name {cases} "
        "ELSE j._violation.raw_value END END AS raw_value, "
        f"coalesce(p._raw_line, {_record_json(t.raw_column_names, value)}) AS raw_record, "
        "j._partition_date, j._file, j._row_number "
        + _with_personal(personal_rows) + " AND j._violation IS NOT NULL"
    )


def identity_select(personal_rows: str) -> str:
    """Rows of ``identity.customer_pii`` (regional store) for the day's staged customers: names,
    emails and phones from ``personal_rows`` (the day's ``raw.customers_personal``), keys from raw."""
    return (
        f"SELECT {typed('customer_id')} AS customer_id, nullif(trim(p.name), '') AS name, "
        f"{normalize_email_sql('p.email')} AS email, nullif(trim(p.phone), '') AS phone, "
        f"j.email_hash, j.phone_hash, {typed('country')} AS country, {typed('region')} AS region, "
        f"{typed('updated_at')} AS updated_at, j._partition_date, j._file, j._row_number "
        + _with_personal(personal_rows) + " AND j._violation IS NULL"
    )


def duplicate_count_sql() -> str:
    return f"SELECT count(*) FROM {JUDGED_TEMP} WHERE _copy > 1"


def conservation_sql(t: SourceTable, lo: date, hi: date) -> str:
    """Per day in [lo, hi]: raw rows, distinct raw rows, staged rows and quarantined rows,
    each counted independently from the stored tables (not from the staging step's own numbers).
    """
    all_cols = ", ".join(quote(c) for c in (*raw_value_columns(t), "_raw_line"))
    rng = f"BETWEEN DATE {sql_literal(lo.isoformat())} AND DATE {sql_literal(hi.isoformat())}"
    return f"""
    WITH days AS (SELECT DISTINCT _partition_date AS d FROM {raw_table(t)} WHERE _partition_date {rng}),
    raw_n AS (SELECT _partition_date AS d, count(*) AS n FROM {raw_table(t)} WHERE _partition_date {rng} GROUP BY 1),
    distinct_n AS (SELECT d, count(*) AS n FROM (
        SELECT _partition_date AS d FROM {raw_table(t)} WHERE _partition_date {rng}
        GROUP BY _partition_date, {all_cols}) GROUP BY 1),
    staged_n AS (SELECT _partition_date AS d, count(*) AS n FROM {staging_table(t)} WHERE _partition_date {rng} GROUP BY 1),
    quarantined_n AS (SELECT _partition_date AS d, count(*) AS n FROM {quarantine_table(t)} WHERE _partition_date {rng} GROUP BY 1)
    SELECT days.d, coalesce(raw_n.n, 0), coalesce(distinct_n.n, 0), coalesce(staged_n.n, 0), coalesce(quarantined_n.n, 0)
    FROM days LEFT JOIN raw_n USING (d) LEFT JOIN distinct_n USING (d)
    LEFT JOIN staged_n USING (d) LEFT JOIN quarantined_n USING (d) ORDER BY 1
    """


def repeated_keys_sql(t: SourceTable, lo: date, hi: date) -> str:
    """Per day in [lo, hi] of ``staging.<t>``: its distinct records (``t.identity``: the key, and the
    version time for a table whose key recurs), how many of them other partitions also hold, and
    those partitions with their counts (``[day, count]`` pairs, most first)."""
    names = [f"k{i}" for i in range(len(t.identity))]
    cols = ", ".join(f"{quote(c)} AS {n}" for c, n in zip(t.identity, names))
    match = " AND ".join(f"s.{quote(c)} = run.{n}" for c, n in zip(t.identity, names))
    keys = ", ".join(f"run.{n}" for n in names)
    rng = f"BETWEEN DATE {sql_literal(lo.isoformat())} AND DATE {sql_literal(hi.isoformat())}"
    return f"""
    WITH run AS (SELECT DISTINCT _partition_date AS d, {cols} FROM {staging_table(t)} WHERE _partition_date {rng}),
    hits AS (SELECT DISTINCT run.d, {keys}, s._partition_date AS other
             FROM run JOIN {staging_table(t)} s ON {match} AND s._partition_date <> run.d),
    repeated AS (SELECT d, count(*) AS n FROM (SELECT DISTINCT * EXCLUDE (other) FROM hits) GROUP BY d),
    per_other AS (SELECT d, other, count(*) AS n FROM hits GROUP BY ALL),
    counted AS (SELECT d, count(*) AS n FROM run GROUP BY d)
    SELECT counted.d, counted.n, coalesce(repeated.n, 0),
           (SELECT list([strftime(p.other, '%Y-%m-%d'), CAST(p.n AS VARCHAR)] ORDER BY p.n DESC, p.other)
            FROM per_other p WHERE p.d = counted.d)
    FROM counted LEFT JOIN repeated USING (d) ORDER BY 1
    """
