"""The shop's source database: the tables ``users``, ``products``, ``orders``,
``order_items`` and ``suppressions`` as SQLAlchemy tables, their state at the end of a local day
(the latest row versions, order statuses as known then, the suppressions recorded by then), and
the synchronisation of a database to that state (new rows inserted, changed rows replaced, rows
unknown at that day removed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from jobs.simulator.spec import World, _end_of_day_ns

_METADATA = sa.MetaData()
USERS_TABLE = sa.Table(
    "users",
    _METADATA,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("signup_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gender", sa.String(1)),
    sa.Column("birth_year", sa.Integer),
    sa.Column("region", sa.String(64)),
    sa.Column("city", sa.String(64)),
    sa.Column("email", sa.String(256)),
    sa.Column("phone", sa.String(32)),
    sa.Column("consent_email", sa.Boolean),
    sa.Column("consent_sms", sa.Boolean),
    sa.Column("consent_push", sa.Boolean),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
PRODUCTS_TABLE = sa.Table(
    "products",
    _METADATA,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(256)),
    sa.Column("category_l1", sa.String(64)),
    sa.Column("category_l2", sa.String(64)),
    sa.Column("brand", sa.String(64)),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("is_active", sa.Boolean),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ORDERS_TABLE = sa.Table(
    "orders",
    _METADATA,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("paid_at", sa.DateTime(timezone=True)),
    sa.Column("total_amount", sa.Numeric(12, 2)),
    sa.Column("discount_amount", sa.Numeric(12, 2)),
    sa.Column("coupon_code", sa.String(32)),
    sa.Column("channel", sa.String(16)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ORDER_ITEMS_TABLE = sa.Table(
    "order_items",
    _METADATA,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.BigInteger),
    sa.Column("quantity", sa.Integer),
    sa.Column("unit_price", sa.Numeric(12, 2)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
SUPPRESSIONS_TABLE = sa.Table(
    "suppressions",
    _METADATA,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("channel", sa.String(8), primary_key=True),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
SOURCE_TABLES: dict[str, tuple[sa.Table, tuple[str, ...]]] = {
    "users": (USERS_TABLE, ("user_id",)),
    "products": (PRODUCTS_TABLE, ("product_id",)),
    "orders": (ORDERS_TABLE, ("order_id",)),
    "order_items": (ORDER_ITEMS_TABLE, ("order_id", "line_no")),
    "suppressions": (SUPPRESSIONS_TABLE, ("user_id", "channel")),
}


def source_state(world: World, as_of: date) -> dict[str, pd.DataFrame]:
    """The source tables as the shop's database holds them at the end of local day ``as_of``."""
    return _source_state(world, _end_of_day_ns(as_of, world.spec.timezone))


def _latest_before(versions: pd.DataFrame, key: str | list[str], end: pd.Timestamp) -> pd.DataFrame:
    known = versions[versions["updated_at"] < end]
    return known.drop_duplicates(key, keep="last").reset_index(drop=True)


def _source_state(world: World, end_ns: int) -> dict[str, pd.DataFrame]:
    end = pd.Timestamp(end_ns, unit="ns", tz="UTC")
    users = _latest_before(world.user_versions, "user_id", end)
    products = _latest_before(world.product_versions, "product_id", end)
    history = world.order_status_history
    seen = history[history["changed_at"] < end]
    last = seen.drop_duplicates("order_id", keep="last").set_index("order_id")
    paid = seen[seen["status"] == "paid"].set_index("order_id")["changed_at"]
    orders = world.orders[world.orders["created_at"] < end].copy()
    orders["status"] = orders["order_id"].map(last["status"])
    orders["updated_at"] = orders["order_id"].map(last["changed_at"])
    orders["paid_at"] = orders["order_id"].map(paid)
    created = orders.set_index("order_id")["created_at"]
    items = world.order_items[world.order_items["order_id"].isin(created.index)].copy()
    items["updated_at"] = items["order_id"].map(created)
    # a suppression is recorded once (updated_at = suppressed_at): those suppressed by the end
    suppressions = _latest_before(world.suppressions, ["user_id", "channel"], end)
    return {
        name: frame[[c.name for c in table.columns]].reset_index(drop=True)
        for name, (table, _), frame in zip(
            SOURCE_TABLES, SOURCE_TABLES.values(), (users, products, orders, items, suppressions), strict=True
        )
    }


def _python_values(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return [None if v is pd.NaT else v.to_pydatetime() for v in series]
    if pd.api.types.is_bool_dtype(series.dtype) and not isinstance(series.dtype, pd.BooleanDtype):
        return series.tolist()
    if pd.api.types.is_float_dtype(series.dtype):
        return [None if np.isnan(v) else round(v, 2) for v in series.tolist()]
    return [None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v for v in series.tolist()]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    values = [_python_values(frame[c]) for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _updated_ns(values: pd.Series) -> np.ndarray:
    if values.empty:
        return np.zeros(0, dtype=np.int64)
    return pd.to_datetime(values, utc=True).dt.as_unit("ns").array.asi8


def _key_values(table: sa.Table, keys: tuple[str, ...], frame: pd.DataFrame) -> pd.DataFrame:
    """The key columns, comparable between the database and the world: integers or text."""
    return pd.DataFrame(
        {k: frame[k].astype(np.int64 if isinstance(table.c[k].type, sa.Integer) else str) for k in keys},
        index=frame.index,
    )


def _sync_table(conn: sa.Connection, table: sa.Table, keys: tuple[str, ...], desired: pd.DataFrame) -> tuple[int, int]:
    """Make ``table`` hold exactly ``desired``: rows compared by key and ``updated_at``."""
    result = conn.execute(sa.select(*[table.c[k] for k in keys], table.c.updated_at)).all()
    existing = pd.DataFrame(result, columns=[*keys, "updated_at"])
    old = _key_values(table, keys, existing)
    old["_old"] = _updated_ns(existing["updated_at"])
    new = _key_values(table, keys, desired)
    new["_new"] = desired["updated_at"].array.asi8
    both = new.merge(old, on=list(keys), how="outer", indicator=True)
    changed = (both["_merge"] == "both") & (both["_new"] != both["_old"])
    stale = both[(both["_merge"] == "right_only") | changed]
    fresh = both[(both["_merge"] == "left_only") | changed]
    if not stale.empty:
        condition = sa.and_(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
        params = [
            {f"k_{k}": int(v) if isinstance(table.c[k].type, sa.Integer) else v for k, v in zip(keys, row, strict=True)}
            for row in stale[list(keys)].itertuples(index=False)
        ]
        conn.execute(table.delete().where(condition), params)
    if not fresh.empty:
        rows = desired.merge(fresh[list(keys)], on=list(keys), how="inner")
        records = _records(rows)
        for start in range(0, len(records), 5000):
            conn.execute(table.insert(), records[start : start + 5000])
    return len(fresh), int((both["_merge"] == "right_only").sum())


def _ensure_sqlite_dir(url: str) -> None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _sync_source(world: World, source_url: str, end_ns: int) -> dict[str, dict[str, int]]:
    _ensure_sqlite_dir(source_url)
    state = _source_state(world, end_ns)
    engine = sa.create_engine(source_url)
    upserted: dict[str, int] = {}
    deleted: dict[str, int] = {}
    try:
        _METADATA.create_all(engine)
        with engine.begin() as conn:
            for name, (table, keys) in SOURCE_TABLES.items():
                upserted[name], deleted[name] = _sync_table(conn, table, keys, state[name])
    finally:
        engine.dispose()
    return {"rows_upserted": upserted, "rows_deleted": deleted}
