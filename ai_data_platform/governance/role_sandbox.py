"""The role sandbox: a role's query run by DuckDB in a child process that sees only the role's
database and can reach nothing else.

:func:`run` (the caller's side) starts ``python -m ai_data_platform.governance.role_sandbox`` with
an environment holding no secret (``ADP_PII_HMAC_KEY`` is not passed on), writes the request to its
stdin (the role database's path, the statement, the :class:`Limits`, and any extra relation, such
as the compliance role's identity table, as Arrow data) and reads the answer from its stdout: the
column names and the rows as Arrow, or a refusal, or an error. The child (:func:`main`):

1. limits itself: address space (DuckDB's memory limit plus room for the interpreter), CPU
   seconds, file size, no core dump;
2. opens the role database read-only (:func:`open_sandbox`): external access off (no file read
   or written, no ATTACH of a file, no COPY/EXPORT, no INSTALL/LOAD, no secrets), extension
   autoloading and community extensions off, Python replacement scans off, a memory limit, a
   thread count, a statement time limit and a private, size-capped temp directory; then
   ``lock_configuration``, so no SET/RESET/PRAGMA changes any of it;
3. judges the statement (``role_sql.check``: one SELECT over the role's relations);
4. runs it, streaming at most :attr:`Limits.rows` rows and :attr:`Limits.result_bytes` back.

A child that outlives :attr:`Limits.seconds` is killed, and one that dies (out of memory, a crash
inside DuckDB) is an error: never a hung or crashed caller. Nothing but the role's relations is
reachable from the child: the warehouse, the regional stores, other roles' databases and the
keys are neither in its database, nor in its environment, nor in its arguments.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from ai_data_platform.governance.role_sql import AccessDenied, QueryError, check, one_line

MODULE = "ai_data_platform.governance.role_sandbox"
CHILD_ENVIRONMENT = ("PATH", "PYTHONPATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Limits:
    """What one role query may use."""

    seconds: float = 60.0  # the statement's wall clock, enforced by DuckDB, then by killing the child
    start_seconds: float = 30.0  # allowed on top for the child's interpreter and imports on a busy machine
    memory_bytes: int = 1 << 30  # DuckDB's memory_limit
    headroom_bytes: int = 2 << 30  # address space above memory_bytes: interpreter, threads, arenas
    threads: int = 2
    rows: int = 100_000
    result_bytes: int = 64 << 20
    temp_bytes: int = 1 << 30  # spilled intermediates in the private temp directory


@dataclass(frozen=True)
class Answer:
    columns: list[str]
    rows: list[tuple]


# -- the caller's side ------------------------------------------------------------------------------


def _arrow_bytes(table) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _child_environment() -> dict[str, str]:
    env = {k: os.environ[k] for k in CHILD_ENVIRONMENT if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run(
    database: Path, sql: str, *, role: str, extras: Mapping[str, object] | None = None, limits: Limits = Limits()
) -> Answer:
    """Run ``sql`` as ``role`` over ``database`` (a role database) in a sandboxed child process.

    ``extras``: ``{"catalog.table": pyarrow.Table}`` relations the child adds (read as
    ``catalog.table``). Raises :class:`AccessDenied` or :class:`QueryError`."""
    blobs = {name: _arrow_bytes(table) for name, table in (extras or {}).items()}
    with tempfile.TemporaryDirectory(prefix="adp-role-query-") as temp:
        request = {
            "database": str(database),
            "sql": sql,
            "role": role,
            "temp_directory": str(Path(temp) / "spill"),
            "limits": asdict(limits),
            "extras": [{"name": name, "bytes": len(blob)} for name, blob in blobs.items()],
        }
        payload = json.dumps(request).encode() + b"\n" + b"".join(blobs.values())
        stderr_path = Path(temp) / "stderr.txt"
        with open(stderr_path, "wb") as stderr:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", MODULE], input=payload, stdout=subprocess.PIPE, stderr=stderr,
                    env=_child_environment(), cwd=temp, timeout=limits.seconds + limits.start_seconds,
                )
            except subprocess.TimeoutExpired:
                raise QueryError(
                    f"the query ran longer than {limits.seconds:g} s, the limit for role queries, and was stopped"
                ) from None
        return _answer(proc, stderr_path.read_text(errors="replace")[-2000:], limits)


def _answer(proc: subprocess.CompletedProcess, stderr: str, limits: Limits) -> Answer:
    head, _, body = proc.stdout.partition(b"\n")
    try:
        answer = json.loads(head) if head else {}
    except ValueError:
        answer = {}
    if "refused" in answer:
        raise AccessDenied(one_line(answer["refused"]))
    if "failed" in answer:
        raise QueryError(one_line(answer["failed"]))
    if "columns" not in answer or proc.returncode != 0:
        if proc.returncode < 0:
            raise QueryError(
                f"the query sandbox was stopped by signal {-proc.returncode} before answering; role queries get "
                f"{limits.memory_bytes >> 20} MiB of memory and {limits.seconds:g} s"
            )
        last = one_line(stderr.strip().splitlines()[-1], 200) if stderr.strip() else "no message"
        raise QueryError(f"the query sandbox failed (exit {proc.returncode}): {last}")
    import pyarrow as pa

    table = pa.ipc.open_stream(body).read_all()
    table = table.rename_columns([f"c{i}" for i in range(table.num_columns)])  # duplicate names are fine
    con = duckdb.connect()
    try:
        rows = con.from_arrow(table).fetchall() if table.num_columns else []
    finally:
        con.close()
    return Answer(list(answer["columns"]), rows)


# -- the child's side -------------------------------------------------------------------------------


def open_sandbox(
    database: Path | str, limits: Limits, temp_directory: Path | str, extras: Mapping[str, object] | None = None
) -> duckdb.DuckDBPyConnection:
    """``database`` opened read-only in a connection that reaches nothing else, its configuration
    locked (see the module docstring). ``extras`` (``{"catalog.table": pyarrow.Table}``) are
    copied into in-memory catalogs first."""
    con = duckdb.connect(
        str(database),
        read_only=True,
        config={
            "threads": limits.threads,
            "memory_limit": f"{limits.memory_bytes}B",
            "temp_directory": str(temp_directory),
            "max_temp_directory_size": f"{limits.temp_bytes}B",
            "max_execution_time": int(limits.seconds * 1000),
            "python_enable_replacements": False,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            "allow_persistent_secrets": False,
            "arrow_lossless_conversion": True,
        },
    )
    try:
        for name, table in (extras or {}).items():
            catalog, relation = name.split(".")
            attached = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [catalog])
            if not attached.fetchall()[0][0]:
                con.execute(f'ATTACH \':memory:\' AS "{catalog}" (READ_WRITE)')
            con.register("_adp_extra", table)
            con.execute(f'CREATE TABLE "{catalog}".main."{relation}" AS SELECT * FROM _adp_extra')
            con.unregister("_adp_extra")
        for setting in ("enable_progress_bar", "enable_external_access"):
            con.execute(f"SET {setting} = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def readable(con: duckdb.DuckDBPyConnection, extras: Mapping[str, object] | None = None) -> list[str]:
    """``schema.table`` of every table of the sandbox's database, and the extras' names."""
    rows = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    return sorted({r[0] for r in rows} | set(extras or {}))


def execute(con: duckdb.DuckDBPyConnection, sql: str, limits: Limits):
    """Run ``sql`` in a sandbox: (column names, pyarrow Table), within the row and byte limits."""
    import pyarrow as pa

    relation = con.sql(sql)
    if relation is None:  # a statement without a result
        return [], pa.table({})
    reader = relation.to_arrow_reader(batch_size=10_000)
    batches, rows, size = [], 0, 0
    for batch in reader:
        rows += batch.num_rows
        size += batch.nbytes
        if rows > limits.rows:
            raise QueryError(
                f"the result has more than {limits.rows} rows, the limit for role queries: add a LIMIT or aggregate"
            )
        if size > limits.result_bytes:
            raise QueryError(f"the result is larger than {limits.result_bytes >> 20} MiB, the limit for role queries: "
                             "select fewer columns or rows")
        batches.append(batch)
    return list(relation.columns), pa.Table.from_batches(batches, schema=reader.schema)


def serve(request: Mapping, extras: Mapping[str, object]):
    """One request, in this process: (column names, pyarrow Table), or AccessDenied/QueryError."""
    limits = Limits(**request["limits"])
    con = open_sandbox(request["database"], limits, request["temp_directory"], extras)
    try:
        catalog = con.execute("SELECT current_database()").fetchall()[0][0]
        check(con, request["role"], request["sql"], readable(con, extras), catalog)
        return execute(con, request["sql"], limits)
    finally:
        con.close()


def _limit_process(limits: Limits) -> None:
    """Bound this process: address space (what it holds now, DuckDB's memory limit and headroom),
    CPU seconds, the size of any file it writes, no core dump."""
    try:
        with open("/proc/self/status") as status:
            now = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        space = now + limits.memory_bytes + limits.headroom_bytes
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
    except (OSError, StopIteration, ValueError):
        pass  # no /proc (not Linux): DuckDB's memory limit and the caller's timeout still hold
    cpu = int(limits.seconds * max(1, limits.threads)) + 10
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.temp_bytes + (64 << 20),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _read_request(stream) -> tuple[dict, dict]:
    import pyarrow as pa

    request = json.loads(stream.readline())
    extras = {}
    for extra in request["extras"]:
        extras[extra["name"]] = pa.ipc.open_stream(stream.read(extra["bytes"])).read_all()
    return request, extras


def main() -> int:
    """The child: one request on stdin, one answer on stdout (a JSON line, then Arrow rows)."""
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever DuckDB or Python prints goes to stderr, never into the answer
    request, extras = _read_request(sys.stdin.buffer)
    limits = Limits(**request["limits"])
    _limit_process(limits)
    try:
        columns, table = serve(request, extras)
    except AccessDenied as exc:
        answer.write(json.dumps({"refused": one_line(str(exc))}).encode() + b"\n")
    except (QueryError, duckdb.Error, MemoryError) as exc:
        answer.write(json.dumps({"failed": one_line(str(exc) or type(exc).__name__)}).encode() + b"\n")
    else:
        answer.write(json.dumps({"columns": columns}).encode() + b"\n" + _arrow_bytes(table))
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
