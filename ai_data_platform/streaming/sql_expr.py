"""Compile the SQL text of feature declarations into Python callables, with SQL semantics.

The feature registry declares filters (``event_type = 'card_transaction' AND ip_country <>
_txn_home_country``), aggregated columns (``CAST(status = 'failed' AS INTEGER)``) and row /
derived expressions (``CASE WHEN avg_txn_amount_90d > 0 THEN amount / avg_txn_amount_90d END``)
as DuckDB SQL. The offline path pastes that text into the compiled SQL; the online path parses
the same text once with sqlglot and turns it into a closure ``f(row, ctx)``: a column named
``_txn_*`` is read from ``ctx`` (the transaction being scored), any other from ``row``.

Semantics follow DuckDB: NULL propagates through comparisons and arithmetic, AND/OR/NOT use
three-valued logic, ``x IN (...)`` is NULL when ``x`` is NULL (or no match and a NULL in the
list), ``/`` always divides as DOUBLE (``x / 0`` is +-inf, ``0 / 0`` NaN), ``CAST(<DOUBLE> AS
INTEGER/BIGINT)`` rounds half to even. A construct outside this subset raises
``UnsupportedExpression`` when the declaration is compiled (at import), never at serving time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

Evaluator = Callable[[Any, Any], Any]
CONTEXT_PREFIX = "_txn_"


class UnsupportedExpression(ValueError):
    """A declaration uses SQL the online interpreter does not implement."""


def parse(sql: str) -> exp.Expression:
    try:
        return sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise UnsupportedExpression(f"cannot parse {sql!r}: {e}") from None


def columns(sql: str) -> set[str]:
    """Every column name the expression reads."""
    return {c.name for c in parse(sql).find_all(exp.Column)}


def conjuncts(sql: str) -> list[str]:
    """The top-level AND terms of a condition, as SQL text."""
    node = parse(sql)
    while isinstance(node, exp.Paren):
        node = node.this
    return [c.sql(dialect="duckdb") for c in node.flatten()] if isinstance(node, exp.And) else [node.sql(dialect="duckdb")]


def compile_sql(sql: str) -> Evaluator:
    """``f(row, ctx)`` evaluating ``sql``; raises UnsupportedExpression on anything unknown."""
    return _compile(parse(sql), sql)


def cast_value(value: Any, dtype: str) -> Any:
    """``CAST(value AS dtype)`` for the types feature declarations use."""
    if value is None:
        return None
    t = dtype.upper()
    if t in ("BIGINT", "INTEGER", "INT"):
        if isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                raise ValueError(f"cannot cast {value} to {t}")
            return int(round(value))  # DOUBLE -> integer rounds half to even, as DuckDB does
        return int(value)
    if t in ("DOUBLE", "FLOAT"):
        return float(value)
    if t == "BOOLEAN":
        return bool(value)
    if t == "VARCHAR":
        return str(value)
    raise UnsupportedExpression(f"CAST to {dtype} is not supported online")


def divide(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    a, b = float(a), float(b)
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


_COMPARE = {exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.GT: operator.gt, exp.GTE: operator.ge,
            exp.LT: operator.lt, exp.LTE: operator.le}
_ARITH = {exp.Add: operator.add, exp.Sub: operator.sub, exp.Mul: operator.mul}
_CAST_TYPES = {exp.DataType.Type.INT: "INTEGER", exp.DataType.Type.BIGINT: "BIGINT", exp.DataType.Type.DOUBLE: "DOUBLE",
               exp.DataType.Type.FLOAT: "DOUBLE", exp.DataType.Type.BOOLEAN: "BOOLEAN", exp.DataType.Type.VARCHAR: "VARCHAR"}


def _compile(node: exp.Expression, source: str) -> Evaluator:  # noqa: C901 - one branch per node type
    if isinstance(node, exp.Paren):
        return _compile(node.this, source)
    if isinstance(node, exp.Column):
        name = node.name
        if name.startswith(CONTEXT_PREFIX):
            return lambda row, ctx: ctx.get(name)
        return lambda row, ctx: row.get(name)
    if isinstance(node, exp.Literal):
        text = node.this
        value: Any = text if node.is_string else (float(text) if any(c in text for c in ".eE") else int(text))
        return lambda row, ctx: value
    if isinstance(node, exp.Null):
        return lambda row, ctx: None
    if isinstance(node, exp.Boolean):
        truth = bool(node.this)
        return lambda row, ctx: truth
    if type(node) in _COMPARE:
        op, left, right = _COMPARE[type(node)], _compile(node.this, source), _compile(node.expression, source)

        def compare(row, ctx):
            a, b = left(row, ctx), right(row, ctx)
            return None if a is None or b is None else op(a, b)

        return compare
    if type(node) in _ARITH:
        op, left, right = _ARITH[type(node)], _compile(node.this, source), _compile(node.expression, source)

        def arith(row, ctx):
            a, b = left(row, ctx), right(row, ctx)
            return None if a is None or b is None else op(a, b)

        return arith
    if isinstance(node, exp.Div):
        left, right = _compile(node.this, source), _compile(node.expression, source)
        return lambda row, ctx: divide(left(row, ctx), right(row, ctx))
    if isinstance(node, exp.Neg):
        inner = _compile(node.this, source)
        return lambda row, ctx: None if (v := inner(row, ctx)) is None else -v
    if isinstance(node, (exp.And, exp.Or)):
        left, right = _compile(node.this, source), _compile(node.expression, source)
        decisive = isinstance(node, exp.Or)  # SQL's three-valued logic: FALSE decides AND, TRUE decides OR

        def and_or(row, ctx):
            a = left(row, ctx)
            if a is decisive:
                return decisive
            b = right(row, ctx)
            if b is decisive:
                return decisive
            return None if a is None or b is None else not decisive

        return and_or
    if isinstance(node, exp.Not):
        inner = _compile(node.this, source)
        return lambda row, ctx: None if (v := inner(row, ctx)) is None else not v
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        inner = _compile(node.this, source)
        return lambda row, ctx: inner(row, ctx) is None
    if isinstance(node, exp.In) and not node.args.get("query"):
        needle = _compile(node.this, source)
        options = [_compile(e, source) for e in node.expressions]

        def in_(row, ctx):
            v = needle(row, ctx)
            if v is None:
                return None
            values = [o(row, ctx) for o in options]
            if v in [x for x in values if x is not None]:
                return True
            return None if any(x is None for x in values) else False

        return in_
    if isinstance(node, exp.Case) and node.this is None:
        branches = [(_compile(i.this, source), _compile(i.args["true"], source)) for i in node.args["ifs"]]
        default = _compile(node.args["default"], source) if node.args.get("default") else (lambda row, ctx: None)

        def case(row, ctx):
            for cond, value in branches:
                if cond(row, ctx) is True:
                    return value(row, ctx)
            return default(row, ctx)

        return case
    if isinstance(node, exp.Cast) and node.to.this in _CAST_TYPES:
        inner, dtype = _compile(node.this, source), _CAST_TYPES[node.to.this]
        return lambda row, ctx: cast_value(inner(row, ctx), dtype)
    raise UnsupportedExpression(f"{type(node).__name__} ({node.sql(dialect='duckdb')!r}) in {source!r} is not supported online")
