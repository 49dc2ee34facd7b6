"""The keyed HMAC used for join keys: SQL and Python agree, keys matter, normalization holds."""

import duckdb
import pytest

from ai_data_platform.governance import pii


@pytest.mark.parametrize("key", ["k", "adp-demo-key-NOT-FOR-PRODUCTION", "x" * 100])
@pytest.mark.parametrize("value", ["ann@example.com", "Ünïcödé@example.de", "+4915112345678"])
def test_sql_hmac_equals_python_hmac(key, value):
    con = duckdb.connect()
    expression = pii.hmac_sql(con, key, "v")
    assert (len(key) < 5 or key not in expression) and not any(pad.hex() in expression for pad in pii.hmac_pads(key))
    got = con.execute(f"SELECT {expression} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone()[0]
    assert got == pii.hmac_hex(key, value)
    assert len(got) == 64


@pytest.mark.parametrize("key", ["k", "x" * 100])
def test_sql_hmac_with_the_key_bound_as_parameters_equals_python_hmac(key):
    ipad, opad = pii.hmac_pads(key)
    expression = pii.hmac_sql_with("v", "$ipad", "$opad")
    assert ipad.hex() not in expression and opad.hex() not in expression
    con = duckdb.connect()
    got = con.execute(f"SELECT {expression} FROM (SELECT $v::VARCHAR AS v)", {"v": "ann@example.com", "ipad": ipad, "opad": opad}).fetchall()
    assert got == [(pii.hmac_hex(key, "ann@example.com"),)]


def test_hmac_depends_on_the_key_and_null_stays_null():
    assert pii.hmac_hex("a", "x@y.z") != pii.hmac_hex("b", "x@y.z")
    con = duckdb.connect()
    assert con.execute(f"SELECT {pii.hmac_sql(con, 'a', 'NULL::VARCHAR')}").fetchone()[0] is None


def test_two_keys_bound_to_one_connection_hash_apart_and_an_unbound_connection_fails():
    con = duckdb.connect()
    a, b = pii.hmac_sql(con, "key a", "'x@y.z'"), pii.hmac_sql(con, "key b", "'x@y.z'")
    assert con.execute(f"SELECT {a}, {b}").fetchone() == (pii.hmac_hex("key a", "x@y.z"), pii.hmac_hex("key b", "x@y.z"))
    with pytest.raises(duckdb.Error, match="not bound"):
        duckdb.connect().execute(f"SELECT {a}").fetchone()


def test_normalization_in_sql_matches_python():
    con = duckdb.connect()
    for raw in [" Ann@Example.COM ", "+49 (151) 123-45", "0151 12345", "", None]:
        e_sql = con.execute(f"SELECT {pii.normalize_email_sql('v')} FROM (SELECT ?::VARCHAR AS v)", [raw]).fetchone()[0]
        p_sql = con.execute(f"SELECT {pii.normalize_phone_sql('v')} FROM (SELECT ?::VARCHAR AS v)", [raw]).fetchone()[0]
        assert e_sql == pii.normalize_email(raw)
        assert p_sql == pii.normalize_phone(raw)
    assert pii.normalize_phone("+49 (151) 123-45") == "+4915112345"
    assert pii.normalize_email(" Ann@Example.COM ") == "ann@example.com"
