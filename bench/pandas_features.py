"""The pandas baseline: ``features/customer_daily`` for one day, computed with groupby-rolling.

What a data scientist would write without the platform: load the staged source rows into pandas,
sort each source by (customer, event time), append one as-of row per active customer at the end
of the day, and compute every windowed feature with ``groupby(...).rolling(window, closed="left")``;
the as-of rows then hold the values. pandas has no rolling distinct count or rolling "last value",
so ``count_distinct``, ``active_days`` and ``last`` use a plain groupby over the window instead
(faster than a rolling ``apply``; generous to pandas). Point in time as in the platform: only rows
with event time before the as-of time and ``_available_at`` at or before it.

The feature list is read from the registry; filters are translated from their SQL by ``mask``
(the few shapes the registry uses); an unsupported shape raises, so the baseline can never
silently compute something else. ``bench_pit.py`` compares every value with the platform's table.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from ai_data_platform.features.registry import CUSTOMER_FEATURES, SOURCES, Feature, duration_seconds

_EQ = re.compile(r"^(\w+) = '([^']*)'$")
_IN = re.compile(r"^(\w+) IN \(([^)]*)\)$")
_CAST_EQ = re.compile(r"^CAST\((\w+) = '([^']*)' AS INTEGER\)$")


def mask(frame: pd.DataFrame, sql: str | None) -> np.ndarray:
    """Boolean mask for a registry filter (``col = 'x'``, ``col IN ('a', 'b')``, ``A AND B``)."""
    if not sql:
        return np.ones(len(frame), dtype=bool)
    out = np.ones(len(frame), dtype=bool)
    for part in sql.split(" AND "):
        part = part.strip()
        if m := _EQ.match(part):
            out &= (frame[m.group(1)] == m.group(2)).to_numpy()
        elif m := _IN.match(part):
            values = [v.strip().strip("'") for v in m.group(2).split(",")]
            out &= frame[m.group(1)].isin(values).to_numpy()
        else:
            raise NotImplementedError(f"pandas baseline cannot translate filter {sql!r}")
    return out


def column(frame: pd.DataFrame, sql: str) -> pd.Series:
    if sql in frame.columns:
        return frame[sql]
    if m := _CAST_EQ.match(sql):
        return (frame[m.group(1)] == m.group(2)).astype("float64")
    raise NotImplementedError(f"pandas baseline cannot translate column {sql!r}")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def source_columns(con, name: str) -> list[str]:
    """The columns of a source the customer features read (keys, times, and what filters name)."""
    spec = SOURCES[name]
    wanted = {"customer_id", spec["time"], spec["key"], "_available_at"}
    for f in CUSTOMER_FEATURES:
        if f.source == name:
            wanted |= set(_IDENT.findall(f"{f.column or ''} {f.filter or ''}"))
    table_cols = [r[0] for r in con.execute(f"DESCRIBE {spec['table']}").fetchall()]
    return [c for c in table_cols if c in wanted]


def load_inputs(con, day: date, lookback_days: int) -> dict[str, pd.DataFrame]:
    """Staged rows pandas needs for ``day``: the feature sources' columns within the lookback
    (plus lateness), and the CRM and subscription history for the active-customer spine."""
    lo = day - timedelta(days=lookback_days)
    frames = {}
    for name in sorted({f.source for f in CUSTOMER_FEATURES if f.source}):
        cols = ", ".join(source_columns(con, name))
        frames[name] = con.execute(
            f"SELECT {cols} FROM {SOURCES[name]['table']} WHERE _partition_date BETWEEN ? AND ?", [lo, day]
        ).df()
    frames["customers"] = con.execute(
        "SELECT customer_id, signup_at, marketing_consent, updated_at, _partition_date, _row_number "
        "FROM staging.customers WHERE _partition_date <= ?", [day]).df()
    frames["subscriptions"] = con.execute(
        "SELECT subscription_id, customer_id, plan, mrr, started_at, cancelled_at, updated_at, _partition_date, "
        "_row_number FROM staging.subscriptions WHERE _partition_date <= ?", [day]).df()
    return frames


def _latest(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    ordered = frame.sort_values([key, "updated_at", "_partition_date", "_row_number"])
    return ordered.drop_duplicates(key, keep="last")


def spine(frames: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    """Active customers at the end of ``day`` with their profile columns."""
    as_of = pd.Timestamp(datetime.combine(day + timedelta(days=1), datetime.min.time()))
    cust = _latest(frames["customers"], "customer_id")
    subs = _latest(frames["subscriptions"], "subscription_id")
    live = subs[(subs.started_at < as_of) & (subs.cancelled_at.isna() | (subs.cancelled_at >= as_of))]
    live = live.sort_values(["customer_id", "started_at"]).drop_duplicates("customer_id", keep="last")
    out = cust[cust.signup_at < as_of][["customer_id", "signup_at", "marketing_consent"]].merge(
        live[["customer_id", "plan", "mrr"]], on="customer_id"
    )
    out["tenure_days"] = (pd.Timestamp(day) - out.signup_at.dt.normalize()).dt.days
    out["marketing_consent"] = out.marketing_consent.astype("int64")
    return out.sort_values("customer_id").reset_index(drop=True)


EPOCH = pd.Timestamp(0)


def _epoch_seconds(times: pd.Series) -> pd.Series:
    """Whole seconds since the epoch (floored), as DuckDB's date_diff('second', ...) counts them."""
    return ((times - EPOCH) // pd.Timedelta(seconds=1)).astype("float64")


def _rolling_features(rows: pd.DataFrame, feats: list[Feature], time_col: str, customers: pd.Series,
                      as_of: pd.Timestamp) -> pd.DataFrame:
    """groupby-rolling over the source rows plus one as-of row per customer; returns the as-of rows."""
    values = {}
    for f in feats:
        keep = mask(rows, f.filter)
        if f.agg == "count":
            values[f.name] = keep.astype("float64")
        elif f.agg == "days_since_last":
            values[f.name] = np.where(keep, _epoch_seconds(rows[time_col]).to_numpy(), np.nan)
        else:
            values[f.name] = np.where(keep, column(rows, f.column).astype("float64").to_numpy(), np.nan)
    data = pd.DataFrame(values)
    data["customer_id"] = rows["customer_id"].to_numpy()
    data["_t"] = rows[time_col].to_numpy()
    data["_as_of_row"] = False
    marks = pd.DataFrame({"customer_id": customers.to_numpy(), "_t": as_of, "_as_of_row": True})
    data = pd.concat([data, marks], ignore_index=True).sort_values(["customer_id", "_t"], kind="stable")
    data = data.reset_index(drop=True)
    out = pd.DataFrame({"customer_id": np.sort(customers.to_numpy())})
    how = {"count": "sum", "sum": "sum", "avg": "mean", "max": "max", "days_since_last": "max"}
    groups: dict[tuple[str, str], list[str]] = {}
    for f in feats:
        groups.setdefault((f.lookback, how[f.agg]), []).append(f.name)
    for (window, agg), names in groups.items():
        rolled = data.groupby("customer_id", sort=True).rolling(f"{duration_seconds(window)}s", on="_t", closed="left")
        result = getattr(rolled[names], agg)()
        # data is sorted by (customer, time) already, so the result's rows are data's rows in order
        assert (result.index.get_level_values(0) == data["customer_id"]).all()
        picked = result[data["_as_of_row"].to_numpy()]
        assert len(picked) == len(out), "one as-of row per customer"
        for name in names:
            out[name] = picked[name].to_numpy()
    for f in feats:
        if f.agg == "count":
            out[f.name] = out[f.name].fillna(0).astype("int64")
        elif f.agg == "days_since_last":
            out[f.name] = ((as_of - EPOCH) // pd.Timedelta(seconds=1) - out[f.name]) / 86400.0
        elif f.default is not None:
            out[f.name] = out[f.name].fillna(f.default)
    return out


def _groupby_features(rows: pd.DataFrame, feats: list[Feature], time_col: str, key: str,
                      as_of: pd.Timestamp) -> pd.DataFrame:
    """The aggregations pandas cannot roll (distinct counts, last value): one groupby per window."""
    out = None
    for f in feats:
        lo = as_of - pd.Timedelta(seconds=duration_seconds(f.lookback))
        sel = rows[(rows[time_col] >= lo) & mask(rows, f.filter)]
        if f.agg == "count_distinct":
            s = sel.groupby("customer_id")[f.column].nunique()
        elif f.agg == "active_days":
            s = sel[f.column].dt.normalize().groupby(sel["customer_id"]).nunique()
        elif f.agg == "last":
            ordered = sel.assign(_v=column(sel, f.column)).sort_values([time_col, "_available_at", key])
            s = ordered.groupby("customer_id")["_v"].last()
        else:
            raise NotImplementedError(f.agg)
        s = s.rename(f.name).astype("float64")
        out = s.to_frame() if out is None else out.join(s, how="outer")
    return out


def customer_daily(frames: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    """Every customer feature as of the end of ``day``, one row per active customer."""
    as_of = pd.Timestamp(datetime.combine(day + timedelta(days=1), datetime.min.time()))
    base = spine(frames, day)
    features = [f for f in CUSTOMER_FEATURES if f.source]
    for source in sorted({f.source for f in features}):
        spec = SOURCES[source]
        time_col = spec["time"]
        feats = [f for f in features if f.source == source]
        widest = max(duration_seconds(f.lookback) for f in feats)
        rows = frames[source]
        rows = rows[(rows[time_col] < as_of) & (rows[time_col] >= as_of - pd.Timedelta(seconds=widest))
                    & (rows["_available_at"] <= as_of)]
        rolling = [f for f in feats if f.agg in ("count", "sum", "avg", "max", "days_since_last")]
        other = [f for f in feats if f not in rolling]
        if rolling:
            values = _rolling_features(rows.reset_index(drop=True), rolling, time_col, base["customer_id"], as_of)
            base = base.merge(values, on="customer_id", how="left")
        if other:
            values = _groupby_features(rows, other, time_col, spec["key"], as_of)
            base = base.merge(values, left_on="customer_id", right_index=True, how="left")
            for f in other:
                if f.default is not None:
                    base[f.name] = base[f.name].fillna(f.default)
    base["activity_trend_7d_vs_30d"] = np.where(
        base.events_30d == 0, np.nan, (base.events_7d / 7.0) / (base.events_30d / 30.0)
    )
    attempts = base.payment_failures_90d + base.paid_count_90d
    base["payment_failure_rate_90d"] = np.where(attempts == 0, np.nan, base.payment_failures_90d / attempts.where(attempts > 0))
    return base
