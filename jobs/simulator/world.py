"""The entry points. :func:`generate` builds a whole :class:`World` in memory from a
:class:`SimulationSpec` (everything vectorised numpy/pandas and depending only on the spec, so
the same spec always gives the same world, byte for byte); :func:`materialize` writes what the
shop knows by the end of a local day (landing files, source database, truth), and materialising
day ``D`` and then ``D + 1`` gives exactly the same as materialising ``D + 1`` once;
:func:`simulate` does both for a pipeline configuration; :func:`published_view` is the world as
the cleaned warehouse would hold it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from jobs.platform.config import PipelineConfig
from jobs.platform.interface import CHANNELS, EVENT_TYPES
from jobs.platform.storage import Storage, open_storage
from jobs.simulator.behaviour import _make_events, _make_orders, _make_sessions, planted_bundles
from jobs.simulator.catalogue import _make_products
from jobs.simulator.dirt import _plan_landing
from jobs.simulator.landing import _write_landing
from jobs.simulator.people import _lifecycle, _make_users
from jobs.simulator.responses import with_responses
from jobs.simulator.source_db import _sync_source
from jobs.simulator.spec import (
    DEVICES,
    LINE_KINDS,
    N_CAT,
    NS_PER_S,
    UNKNOWN_PRODUCT_ID_BASE,
    UTM_SOURCES,
    VALID,
    SimulationSpec,
    World,
    _calendar,
    _end_of_day_ns,
    _hex_ids,
    _local_days,
    _rng,
    _utc,
)
from jobs.simulator.suppressions import _make_suppressions
from jobs.simulator.truth import _landing_truth, _sessions_truth, _world_truth, _write_truth


def _validate(spec: SimulationSpec) -> None:
    problems = []
    if spec.seed < 0:
        problems.append("seed must be >= 0")
    if spec.days < 1:
        problems.append("days must be >= 1")
    if spec.users < 1:
        problems.append("users must be >= 1")
    if not N_CAT <= spec.products < UNKNOWN_PRODUCT_ID_BASE:
        problems.append(f"products must be in [{N_CAT}, {UNKNOWN_PRODUCT_ID_BASE})")
    if spec.sessions_per_user_per_week < 0:
        problems.append("sessions_per_user_per_week must be >= 0")
    if not 0 <= spec.anonymous_share < 1:
        problems.append("anonymous_share must be in [0, 1)")
    if not 0 <= spec.dirt_rate <= 0.3:
        problems.append("dirt_rate must be in [0, 0.3]")
    ZoneInfo(spec.timezone)
    if problems:
        raise ValueError("invalid SimulationSpec: " + "; ".join(problems))


def _nullable_int(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing.astype(bool))


def generate(spec: SimulationSpec) -> World:
    """Build the whole simulated shop in memory. Deterministic for a spec; writes nothing."""
    _validate(spec)
    cal = _calendar(spec)
    products, prod = _make_products(spec, cal)
    users = _make_users(spec, cal, prod)
    state, mult = _lifecycle(spec, users)
    sessions = _make_sessions(spec, cal, users, mult, prod)
    ev, carts = _make_events(spec, sessions, users, prod)
    orders, order_items, history = _make_orders(spec, cal, sessions, carts, users, prod)
    suppressions = _make_suppressions(spec, cal, users)

    s = ev["sess"]
    channel = sessions["channel"].to_numpy()[s]
    is_bot = sessions["is_bot"].to_numpy()[s]
    lines, plan = _plan_landing(spec, cal, ev, channel, is_bot)
    files = plan["files"]
    local_day = _local_days(ev["ns"], cal.tz)
    landing_truth, valid_by_file = _landing_truth(files, lines, local_day, is_bot, ev["type"])

    user_idx = sessions["user_idx"].to_numpy()[s]
    utm = sessions["utm"].to_numpy()[s]
    kind = plan["kind"]
    events = pd.DataFrame(
        {
            "event_id": _hex_ids(_rng(spec, "event-ids"), len(s), uuid=True),
            "event_type": pd.Categorical.from_codes(ev["type"], EVENT_TYPES),
            "event_ts": _utc(ev["ns"]),
            "user_id": _nullable_int(user_idx + 1, user_idx < 0),
            "anonymous_id": sessions["anonymous_id"].to_numpy()[s],
            "session_id": sessions["session_id"].to_numpy()[s],
            "product_id": _nullable_int(ev["product"] + 1, ev["product"] < 0),
            "query": ev["query"],
            "channel": pd.Categorical.from_codes(channel, CHANNELS),
            "device": pd.Categorical.from_codes(sessions["device"].to_numpy()[s], DEVICES),
            "utm_source": pd.Categorical.from_codes(utm, UTM_SOURCES),
            "price": ev["price"],
            "is_bot": is_bot,
            "local_date": local_day,
            "write_ts": _utc(plan["write_ns"]),
            "file_key": pd.Categorical.from_codes(plan["file_of_event"], files["key"].tolist()),
            "dirt": pd.Categorical.from_codes(np.where(kind == VALID, -1, kind), LINE_KINDS),
        }
    )

    truth = _world_truth(spec, cal, users, prod, state, orders, order_items)
    truth["landing_files"] = landing_truth
    truth["valid_events_by_file"] = valid_by_file
    truth["sessions"] = _sessions_truth(sessions)
    bundles = planted_bundles(spec, prod)
    truth["planted_bundles"] = pd.DataFrame(
        {
            "antecedent_product_id": bundles["antecedent"].to_numpy(np.int64) + 1,
            "consequent_product_id": bundles["consequent"].to_numpy(np.int64) + 1,
            "attach_probability": bundles["attach_probability"],
        }
    )

    user_versions = users["versions"]
    final_users = user_versions.drop_duplicates("user_id", keep="last").reset_index(drop=True)
    product_versions = prod["versions"]
    final_products = product_versions.drop_duplicates("product_id", keep="last").reset_index(drop=True)
    promo_days = tuple(cal.days[i] for i in np.flatnonzero(cal.promo))
    return World(
        spec=spec,
        users=final_users,
        products=final_products,
        orders=orders,
        order_items=order_items,
        events=events,
        order_status_history=history,
        truth=truth,
        user_versions=user_versions,
        product_versions=product_versions,
        suppressions=suppressions,
        files=files,
        lines=lines,
        promo_days=promo_days,
    )


def published_view(world: World) -> dict[str, pd.DataFrame]:
    """The world as the cleaned warehouse would hold it, for model studies without the
    pipeline: true values only (no dirt, no bots, logged-in events), final order statuses.
    ``events``: user_id, product_id, event_type, event_at (UTC), event_date (local); ``orders``: order_id, user_id,
    status, created_at, order_date (local); ``order_items``: order_id, line_no, product_id,
    quantity; ``products``: the final catalogue rows."""
    ev = world.events
    keep = ~ev["is_bot"] & ev["user_id"].notna() & ev["dirt"].isna()
    events = pd.DataFrame(
        {
            "user_id": ev.loc[keep, "user_id"].astype("int64"),
            "product_id": ev.loc[keep, "product_id"].astype("Int64"),
            "event_type": ev.loc[keep, "event_type"].astype(str),
            "event_at": ev.loc[keep, "event_ts"].dt.tz_localize(None),
            "event_date": ev.loc[keep, "event_ts"].dt.tz_convert(world.spec.timezone).dt.date,
        }
    ).reset_index(drop=True)
    created = world.orders["created_at"]
    orders = pd.DataFrame(
        {
            "order_id": world.orders["order_id"],
            "user_id": world.orders["user_id"],
            "status": world.orders["final_status"],
            "created_at": created.dt.tz_localize(None),
            "order_date": created.dt.tz_convert(world.spec.timezone).dt.date,
        }
    )
    items = world.order_items
    order_items = pd.DataFrame(
        {
            "order_id": items["order_id"],
            "line_no": items["line_no"],
            "product_id": items["true_product_id"],
            "quantity": items["quantity"],
        }
    )
    return {
        "events": events,
        "orders": orders,
        "order_items": order_items,
        "products": world.products.copy(),
    }


def materialize(
    world: World,
    landing: Storage,
    source_url: str,
    as_of: date,
    truth_dir: str | Path | Storage,
    exports: Storage | None = None,
) -> dict:
    """Write everything known by the end of local day ``as_of``; idempotent and incremental.

    Landing files whose write hour ended by then and that are not in ``landing`` yet are
    written (existing ones are left alone). The source DB tables are created if missing and
    synchronised to their state at the end of ``as_of``. The truth tables (Parquet) are
    rewritten under ``truth_dir`` (a local path, ``s3://`` URI or a Storage). With ``exports``
    (the pipeline's exports root), customers answer the campaigns exported before ``as_of``
    (:mod:`jobs.simulator.responses`): their extra orders join the source database and the truth
    gets ``campaign_responses``. Returns a summary.
    """
    answered = {}
    if exports is not None:
        world = with_responses(world, exports, as_of)
        responses = world.truth["campaign_responses"]
        answered = {
            "campaign_messages": len(responses),
            "campaign_responses": int(responses["responded"].sum()),
            "exports_refused": world.truth["refused_exports"]["manifest"].tolist(),
        }
    end_ns = _end_of_day_ns(as_of, world.spec.timezone)
    landing_summary = _write_landing(world, landing, end_ns)
    db_summary = _sync_source(world, source_url, end_ns)
    truth_files = _write_truth(world, as_of, truth_dir)
    return {
        "as_of": as_of.isoformat(),
        "known_until_utc": datetime.fromtimestamp(end_ns / NS_PER_S, tz=UTC).isoformat(),
        "landing_root": landing.root,
        **landing_summary,
        **db_summary,
        **answered,
        "truth_files": truth_files,
    }


def simulate(config: PipelineConfig, spec: SimulationSpec, as_of: date | None = None) -> dict:
    """Generate the world of ``spec`` and materialise it into the configured storage and DB.

    The shop's time zone comes from ``config.shop.timezone`` (it overrides ``spec.timezone``,
    so landing folders and local days agree with what the pipeline collects). ``as_of``
    defaults to the last simulated day.
    """
    if spec.timezone != config.shop.timezone:
        spec = dataclasses.replace(spec, timezone=config.shop.timezone)
    world = generate(spec)
    storage = config.storage
    landing = open_storage(storage.landing_root, storage.s3_endpoint_url, storage.s3_region)
    truth_root = f"{storage.state_root.rstrip('/')}/truth"
    truth: str | Storage = truth_root
    if truth_root.startswith("s3://"):
        truth = open_storage(truth_root, storage.s3_endpoint_url, storage.s3_region)
    last_day = spec.start_date + timedelta(days=spec.days - 1)
    summary = materialize(world, landing, config.source.url, as_of or last_day, truth)
    summary["events_generated"] = len(world.events)
    summary["orders_generated"] = len(world.orders)
    return summary
