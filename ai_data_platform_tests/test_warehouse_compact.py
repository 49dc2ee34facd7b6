"""Compaction: after a DELETE the old values stay in the DuckDB file until it is compacted."""

import secrets

from ai_data_platform import warehouse


def test_compaction_removes_the_bytes_of_deleted_rows_and_keeps_everything_else(tmp_path):
    path = tmp_path / "w.duckdb"
    marker = "ERASE-ME-" + secrets.token_hex(8)
    con = warehouse.connect(path)
    con.execute("SET force_compression = 'uncompressed'")  # so the value's bytes are findable at all
    warehouse.ensure_schemas(con)
    con.execute("CREATE TABLE raw.t (id INTEGER, s VARCHAR)")
    con.execute("INSERT INTO raw.t SELECT i, 'row' || i FROM range(200000) r(i)")
    con.execute("INSERT INTO raw.t VALUES (-1, ?)", [marker])
    con.execute("INSERT INTO raw.t SELECT i, 'more' || i FROM range(200000) r(i)")
    con.execute("CREATE VIEW marts.v AS SELECT id FROM raw.t WHERE id < 10")
    con.execute("CHECKPOINT")
    assert marker.encode() in path.read_bytes()
    con.execute("DELETE FROM raw.t WHERE id = -1")
    con.execute("CHECKPOINT")
    con.close()
    assert marker.encode() in path.read_bytes()  # deleted, but still on disk

    before, after = warehouse.compact(path)

    assert marker.encode() not in path.read_bytes()
    assert after < before
    con = warehouse.connect(path, read_only=True)
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE id = -1) FROM raw.t").fetchone() == (400000, 0)
    assert con.execute("SELECT count(*) FROM marts.v").fetchone()[0] == 20
    con.close()
    assert not list(tmp_path.glob(".*compacting*"))
