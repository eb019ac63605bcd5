"""The ground truth, which the pipeline never reads and tests compare against: built from
the latent arrays while the world is generated (users' trajectories, interests and tastes, true
lifecycle states per day, product popularity and tastes, sessions, what each landing file
holds, dirty order items), and cut and written as Parquet (plus ``simulation.json``) as known at
the end of a local day, with who is suppressed on which channel by then."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.platform.interface import EVENT_TYPES
from jobs.platform.storage import Storage, open_storage
from jobs.simulator.source_db import _source_state
from jobs.simulator.spec import (
    BRANDS,
    CATEGORY_L1,
    CHURNED,
    DECLINING,
    LIFECYCLE_STATES,
    LINE_KINDS,
    NO_TIME,
    PROSPECT,
    REACTIVATED,
    VALID,
    SimulationSpec,
    World,
    _Calendar,
    _end_of_day_ns,
    _utc,
)

# --------------------------------------------------------------------------------------------
# Built with the world
# --------------------------------------------------------------------------------------------


def _sessions_truth(sessions: pd.DataFrame) -> pd.DataFrame:
    user = sessions["user_idx"].to_numpy()
    return pd.DataFrame(
        {
            "session_id": sessions["session_id"],
            "user_id": np.where(user >= 0, user + 1, 0),  # 0 = anonymous
            "started_at": _utc(sessions["start_ns"].to_numpy()),
            "is_bot": sessions["is_bot"],
            "logged_in": sessions["logged_in"],
            "promo": sessions["promo"],
            "focus_category": np.array(CATEGORY_L1, object)[sessions["focus_cat"].to_numpy()],
        }
    )


def _landing_truth(
    files: pd.DataFrame,
    lines: pd.DataFrame,
    ev_local_day: np.ndarray,
    is_bot: np.ndarray,
    etype: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-file line counts by kind, and valid events by file x local date x event type."""
    f = lines["file_idx"].to_numpy()
    kind = lines["kind"].to_numpy()
    row = lines["event_row"].to_numpy()
    n_files = len(files)
    truth = files[["key", "hour_start", "write_date", "local_logical_date", "is_late_batch"]].copy()
    truth["n_lines"] = np.bincount(f, minlength=n_files)
    for code, name in enumerate(LINE_KINDS):
        truth[f"n_{name}"] = np.bincount(f, weights=kind == code, minlength=n_files).astype(np.int64)
    valid = kind == VALID
    truth["n_bot"] = np.bincount(f, weights=valid & is_bot[row], minlength=n_files).astype(np.int64)
    logical = np.array(files["local_logical_date"].to_numpy(), dtype="datetime64[D]")
    late = valid & (ev_local_day[row] < logical[f])
    truth["n_late"] = np.bincount(f, weights=late, minlength=n_files).astype(np.int64)

    by_day = pd.DataFrame(
        {
            "file_idx": f[valid],
            "local_date": ev_local_day[row[valid]],
            "event_type": etype[row[valid]],
            "is_bot": is_bot[row[valid]],
        }
    )
    by_day = (
        by_day.groupby(["file_idx", "local_date", "event_type"], sort=True)
        .agg(n_events=("is_bot", "size"), n_bot_events=("is_bot", "sum"))
        .reset_index()
    )
    by_day["event_type"] = np.array(EVENT_TYPES, dtype=object)[by_day["event_type"].to_numpy()]
    return truth, by_day


def _world_truth(
    spec: SimulationSpec,
    cal: _Calendar,
    users: dict,
    prod: dict,
    state: np.ndarray,
    orders: pd.DataFrame,
    order_items: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    n = spec.users
    start = np.datetime64(spec.start_date, "D")

    def day_or_none(rel: np.ndarray, applies: np.ndarray) -> pd.Series:
        values = (start + rel.astype("timedelta64[D]")).astype("datetime64[ns]")
        return pd.Series(np.where(applies, values, np.datetime64("NaT", "ns")))

    traj = users["trajectory"]
    cat_aff, brand_aff = users["cat_aff"], users["brand_aff"]
    top_brands = np.argsort(-brand_aff, axis=1, kind="stable")[:, :3]
    frame = pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1),
            "signup_at": _utc(users["signup"]),
            "trajectory": np.array(LIFECYCLE_STATES, dtype=object)[traj],
            "activity": users["activity"],  # latent sessions per week
            "buy_propensity": users["buy_propensity"],
            "is_prospect": traj == PROSPECT,
            "decline_from": day_or_none(users["t1"], np.isin(traj, [DECLINING, CHURNED])),
            "churned_from": day_or_none(users["t2"], traj == CHURNED),
            "reactivated_from": day_or_none(users["t3"], traj == REACTIVATED),
            "top_category": np.array(CATEGORY_L1, dtype=object)[cat_aff.argmax(axis=1)],
            "top_brand": np.array(BRANDS, dtype=object)[top_brands[:, 0]],
            "top_brands": [list(row) for row in np.array(BRANDS, dtype=object)[top_brands]],
        }
    )
    for c, name in enumerate(CATEGORY_L1):
        frame[f"affinity_{_slug(name)}"] = cat_aff[:, c]
    frame["brand_affinity"] = list(brand_aff)  # aligned with BRANDS
    frame["top_taste"] = users["taste_aff"].argmax(axis=1)
    frame["taste_affinity"] = list(users["taste_aff"])  # aligned with product taste 0..N_TASTE-1

    uu, dd = np.nonzero(state >= 0)
    lifecycle = pd.DataFrame(
        {
            "user_id": uu + 1,
            "date": (start + dd.astype("timedelta64[D]")).astype("datetime64[ns]"),
            "true_state": pd.Categorical.from_codes(state[uu, dd], LIFECYCLE_STATES),
        }
    )
    products = pd.DataFrame(
        {
            "product_id": np.arange(1, len(prod["cat"]) + 1),
            "popularity": prod["popularity"],
            "taste": prod["taste"],
            "base_price": prod["price"],
            "price_changed_at": _utc(prod["change_ns"]),
            "new_price": np.where(prod["change_ns"] != NO_TIME, prod["new_price"], np.nan),
        }
    )
    dirty_items = order_items.loc[
        order_items["dirt_reason"].notna(),
        ["order_id", "line_no", "product_id", "true_product_id", "dirt_reason"],
    ].reset_index(drop=True)
    return {
        "users": frame,
        "lifecycle_daily": lifecycle,
        "products": products,
        "order_items_dirty": dirty_items,
    }


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).replace("___", "_")


# --------------------------------------------------------------------------------------------
# As of a day, written
# --------------------------------------------------------------------------------------------


def _parquet_bytes(frame: pd.DataFrame, date_columns: tuple[str, ...] = ()) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name in date_columns:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.cast(table[name], pa.date32()))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def truth_as_of(world: World, as_of: date) -> dict[str, pd.DataFrame]:
    """The truth tables as :func:`materialize` writes them for ``as_of``."""
    end_ns = _end_of_day_ns(as_of, world.spec.timezone)
    end = pd.Timestamp(end_ns, unit="ns", tz="UTC")
    truth = world.truth
    files = truth["landing_files"]
    written = files["hour_start"] + pd.Timedelta(hours=1) <= end
    landing = files[written].drop(columns=["hour_start"]).reset_index(drop=True)
    known_idx = np.flatnonzero(written.to_numpy())
    by_file = truth["valid_events_by_file"]
    daily = (
        by_file[by_file["file_idx"].isin(known_idx)]
        .groupby(["local_date", "event_type"], as_index=False)[["n_events", "n_bot_events"]]
        .sum()
    )
    users = truth["users"][truth["users"]["signup_at"] < end].reset_index(drop=True)
    lifecycle = truth["lifecycle_daily"]
    lifecycle = lifecycle[lifecycle["date"] <= pd.Timestamp(as_of)].reset_index(drop=True)
    state = _source_state(world, end_ns)
    orders = world.orders[world.orders["created_at"] < end]
    n_items = world.order_items.groupby("order_id").size()
    n_dirty = world.order_items.groupby("order_id")["dirt_reason"].count()
    orders_truth = pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "user_id": orders["user_id"],
            "session_id": orders["session_id"],
            "created_at": orders["created_at"],
            "channel": orders["channel"],
            "coupon_code": orders["coupon_code"],
            "subtotal": orders["subtotal"],
            "discount_amount": orders["discount_amount"],
            "total_amount": orders["true_total_amount"],
            "reported_total_amount": orders["total_amount"],
            "status_as_of": orders["order_id"].map(state["orders"].set_index("order_id")["status"]),
            "final_status": orders["final_status"],
            "is_promo_day": orders["is_promo_day"],
            "is_dirty": orders["dirt_reason"].notna(),
            "dirt_reason": orders["dirt_reason"],
            "n_items": orders["order_id"].map(n_items).fillna(0).astype(int),
            "has_dirty_item": orders["order_id"].map(n_dirty).fillna(0).astype(int) > 0,
        }
    ).reset_index(drop=True)
    dirty_items = truth["order_items_dirty"]
    dirty_items = dirty_items[dirty_items["order_id"].isin(orders["order_id"])].reset_index(drop=True)
    answers = {"campaign_responses": truth["campaign_responses"]} if "campaign_responses" in truth else {}
    return {
        "landing_files": landing,
        "events_daily": daily,
        "users": users,
        "lifecycle_daily": lifecycle,
        "orders": orders_truth,
        "order_items_dirty": dirty_items,
        "products": truth["products"],
        "planted_bundles": truth["planted_bundles"],
        "suppressions": state["suppressions"][["user_id", "channel", "reason", "suppressed_at"]],
        **answers,
    }


def _truth_storage(truth_dir: str | Path | Storage) -> Storage:
    if isinstance(truth_dir, (str, Path)):
        return open_storage(str(truth_dir))
    return truth_dir


def _write_truth(world: World, as_of: date, truth_dir: str | Path | Storage) -> list[str]:
    storage = _truth_storage(truth_dir)
    tables = truth_as_of(world, as_of)
    dates = {
        "landing_files": ("write_date", "local_logical_date"),
        "events_daily": ("local_date",),
        "lifecycle_daily": ("date",),
        "users": ("decline_from", "churned_from", "reactivated_from"),
        "campaign_responses": ("contact_date",),
    }
    written = []
    for name, frame in tables.items():
        storage.write_bytes(f"{name}.parquet", _parquet_bytes(frame, dates.get(name, ())))
        written.append(f"{name}.parquet")
    meta = {
        "spec": {k: str(v) if isinstance(v, date) else v for k, v in dataclasses.asdict(world.spec).items()},
        "as_of": as_of.isoformat(),
        "promo_days": [d.isoformat() for d in world.promo_days],
        "brands": list(BRANDS),
        "categories": list(CATEGORY_L1),
        "lifecycle_states": list(LIFECYCLE_STATES),
        "line_kinds": list(LINE_KINDS),
    }
    storage.write_bytes("simulation.json", json.dumps(meta, indent=2).encode())
    written.append("simulation.json")
    return written
