"""Tests of the shop simulator (jobs/simulator/): determinism, realism, landing files, dirt,
incremental materialisation into local/S3 storage and the source DB."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from jobs.platform.config import PipelineConfig, SourceConfig, StorageConfig
from jobs.platform.interface import CHANNELS, EVENT_TYPES, SUPPRESSION_CHANNELS, SUPPRESSION_REASONS
from jobs.platform.storage import open_storage
from jobs.simulator import (
    SimulationSpec,
    World,
    generate,
    materialize,
    published_view,
    simulate,
)
from jobs.simulator.spec import EVENT_KEYS, LIFECYCLE_STATES, REJECT_KINDS, REQUIRED_FIELDS

TZ = ZoneInfo("Asia/Shanghai")
SMALL = SimulationSpec(seed=7, days=8, users=300, products=60, dirt_rate=0.06)
TABLES = ("users", "products", "orders", "order_items", "suppressions")
FRAMES = ("users", "products", "orders", "order_items", "events", "order_status_history",
          "user_versions", "product_versions", "suppressions", "files", "lines")  # fmt: skip


@pytest.fixture(scope="module")
def world() -> World:
    return generate(SMALL)


@pytest.fixture(scope="module")
def medium() -> World:
    """Large enough for stable rates, still well under a second."""
    return generate(SimulationSpec(seed=3, days=21, users=2500, products=200, dirt_rate=0.0))


def _day(spec: SimulationSpec, i: int) -> date:
    return spec.start_date + timedelta(days=i)


def _end_utc(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time(), TZ)


def _materialize(w: World, root: Path, as_of: date) -> dict:
    return materialize(
        w,
        open_storage(str(root / "landing")),
        f"sqlite:///{root}/src/shop.db",
        as_of,
        root / "truth",
    )


def _db_rows(root: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(root / "src" / "shop.db") as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}


def _landing_bytes(root: Path) -> dict[str, bytes]:
    base = root / "landing"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*.gz")}


def _file_order(key: str) -> tuple[str, str, int]:
    _, date_part, hour_part, name = key.split("/")
    return date_part, hour_part, int(name.split("-")[-1].split(".")[0])


# --------------------------------------------------------------------------------------------
# A straightforward checker of landing lines, independent of the simulator's bookkeeping
# --------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def _classify(line: str, product_ids: set[int]) -> tuple[str, dict | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json", None
    if not isinstance(obj, dict):
        return "malformed_json", None
    if any(obj.get(name) in (None, "") for name in REQUIRED_FIELDS):
        return "missing_required_field", obj
    if not all(obj.get(k) is None or _is_int(obj[k]) for k in ("user_id", "product_id")):
        return "wrong_type", obj
    if obj.get("price") is not None and not _is_number(obj["price"]):
        return "wrong_type", obj
    try:
        ts = datetime.fromisoformat(obj["event_ts"])
    except (TypeError, ValueError):
        return "invalid_timestamp", obj
    if ts.tzinfo is None or not 2000 <= ts.year <= 2090:
        return "invalid_timestamp", obj
    if obj["event_type"] not in EVENT_TYPES or obj["channel"] not in CHANNELS:
        return "invalid_enum", obj
    if obj.get("product_id") is not None and obj["product_id"] not in product_ids:
        return "unknown_product_id", obj
    return "valid", obj


def _check_landing(root: Path, product_ids: set[int]) -> pd.DataFrame:
    """Per file: counts by kind, with duplicates judged over files in write order."""
    seen: set[str] = set()
    rows = []
    valid_events = []
    for key in sorted(_landing_bytes(root), key=_file_order):
        text = gzip.decompress((root / "landing" / key).read_bytes()).decode("utf-8")
        assert text.endswith("\n")
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            kind, obj = _classify(line, product_ids)
            if kind == "valid":
                if obj["event_id"] in seen:
                    kind = "duplicate"
                else:
                    seen.add(obj["event_id"])
                    valid_events.append((key, obj))
            counts[kind] += 1
        rows.append(
            {
                "key": key,
                "n_lines": sum(counts.values()),
                **{f"n_{k}": v for k, v in counts.items()},
            }
        )
    found = pd.DataFrame(rows).fillna(0)
    found.attrs["valid_events"] = valid_events
    return found


# --------------------------------------------------------------------------------------------
# generate()
# --------------------------------------------------------------------------------------------


def test_generate_is_deterministic(world: World) -> None:
    again = generate(SMALL)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(world, name), getattr(again, name), obj=name)
    for name, frame in world.truth.items():
        pd.testing.assert_frame_equal(frame, again.truth[name], obj=f"truth[{name}]")
    other = generate(SimulationSpec(seed=8, days=8, users=300, products=60, dirt_rate=0.06))
    assert not set(other.events["event_id"]) & set(world.events["event_id"])
    assert not world.products["price"].equals(other.products["price"])


def test_event_mix_and_funnel_are_plausible(medium: World) -> None:
    ev = medium.events
    share = ev["event_type"].value_counts(normalize=True)
    assert share["page_view"] + share["product_view"] >= 0.88
    assert set(share.index) == set(EVENT_TYPES)
    sessions = ev["session_id"].nunique()
    carts = ev.loc[ev["event_type"] == "add_to_cart", "session_id"].nunique()
    orders = len(medium.orders)
    assert 0.55 <= 1 - orders / carts <= 0.85  # cart abandonment
    assert 0.01 <= orders / sessions <= 0.08  # session conversion
    first = ev.drop_duplicates("session_id")
    assert 0.25 <= first["user_id"].isna().mean() <= 0.35
    assert ev["anonymous_id"].notna().all() and ev["session_id"].notna().all()
    product_events = ev["event_type"].isin(["product_view", "add_to_cart", "remove_from_cart", "favorite"])
    assert ev.loc[product_events, "price"].notna().all()
    assert ev.loc[~product_events, ["price", "product_id"]].isna().all().all()
    assert ev.loc[ev["event_type"] == "search", "query"].notna().all()
    # popularity is long-tailed: the top 10% of products get a large share of the views
    views = ev.loc[ev["event_type"] == "product_view", "product_id"].value_counts()
    assert views.iloc[: max(1, len(views) // 10)].sum() / views.sum() > 0.3


def test_purchases_follow_interests(medium: World) -> None:
    truth = medium.truth["users"].set_index("user_id")
    affinity = truth[[c for c in truth.columns if c.startswith("affinity_")]]
    items = medium.order_items[medium.order_items["dirt_reason"].isna()]
    items = items.merge(medium.orders[["order_id", "user_id"]], on="order_id")
    category = medium.products.set_index("product_id")["category_l1"]
    cats = items["product_id"].map(category).str.lower().str.replace(r"\W+", "_", regex=True)
    top2 = affinity.to_numpy().argsort(axis=1)[:, -2:]
    names = np.array([c.removeprefix("affinity_") for c in affinity.columns])
    user_top = {u: set(names[t]) for u, t in zip(affinity.index, top2, strict=True)}
    in_top = [c in user_top[u] for u, c in zip(items["user_id"], cats, strict=True)]
    assert np.mean(in_top) > 0.5  # 2 of 8 categories would give ~0.25 by chance


def test_views_and_carts_follow_planted_tastes(medium: World) -> None:
    """Every user has a latent favourite taste (no published column shows it): it steers their
    product views, and their carts more strongly still."""
    events = published_view(medium)["events"].dropna(subset=["product_id"])
    favourite = medium.truth["users"].set_index("user_id")["top_taste"]
    taste = medium.truth["products"].set_index("product_id")["taste"]
    chance = taste.value_counts(normalize=True).reindex(favourite).mean()
    share = {}
    for kind in ("product_view", "add_to_cart"):
        rows = events[events["event_type"] == kind]
        share[kind] = np.mean(
            taste.reindex(rows["product_id"]).to_numpy() == favourite.reindex(rows["user_id"]).to_numpy()
        )
    assert share["product_view"] > 3 * chance and share["add_to_cart"] > share["product_view"] + 0.1, (share, chance)


def test_orders_are_consistent(world: World) -> None:
    orders, items = world.orders, world.order_items
    assert (world.order_status_history.groupby("order_id").size() >= 2).all()
    subtotal = (items["quantity"] * items["unit_price"]).groupby(items["order_id"]).sum()
    expected = (orders["order_id"].map(subtotal) - orders["discount_amount"]).round(2)
    clean = orders["dirt_reason"].isna()
    assert np.allclose(orders.loc[clean, "total_amount"], expected[clean], atol=0.011)
    dirty = orders[~clean]
    assert len(dirty) >= 1 and (dirty["dirt_reason"] == "invalid_amount").all()
    assert ((dirty["total_amount"] < 0) | (dirty["total_amount"] > 1_000_000)).all()
    assert (orders.loc[clean, "total_amount"].between(0, 100_000)).all()
    bad_items = items[items["dirt_reason"].notna()]
    assert len(bad_items) >= 1
    assert not bad_items["product_id"].isin(world.products["product_id"]).any()
    assert not bad_items["order_id"].isin(dirty["order_id"]).any()
    assert bad_items.groupby("order_id").size().max() == 1
    assert (items.groupby("order_id")["line_no"].min() == 1).all()
    assert set(orders["final_status"]) <= {"completed", "cancelled", "refunded", "shipped", "paid"}


def test_suppressions_are_unique_per_user_and_channel_and_fall_in_each_users_lifetime(medium: World) -> None:
    rows = medium.suppressions
    assert not rows.duplicated(["user_id", "channel"]).any()
    assert set(rows["channel"]) == set(SUPPRESSION_CHANNELS) and set(rows["reason"]) <= set(SUPPRESSION_REASONS)
    assert (rows["updated_at"] == rows["suppressed_at"]).all()  # recorded once, never changed
    signup = medium.users.set_index("user_id")["signup_at"]
    assert (rows["suppressed_at"] > rows["user_id"].map(signup)).all()
    end = _end_utc(_day(medium.spec, medium.spec.days - 1))
    start = _end_utc(_day(medium.spec, -1))
    assert rows["suppressed_at"].max() < end
    in_period = rows[rows["suppressed_at"] >= start]
    assert 0 < len(in_period) < len(rows)  # some during the period, a history before it
    # only customers who agreed to a channel's marketing unsubscribe from it or complain about it
    first = medium.user_versions.drop_duplicates("user_id").set_index("user_id")
    for channel in ("email", "sms", "push"):
        asked = rows[(rows["channel"] == channel) & (rows["reason"] != "bounced")]
        assert first.loc[asked["user_id"], f"consent_{channel}"].all(), channel
    bounced_sms = rows[(rows["channel"] == "sms") & (rows["reason"] == "bounced")]
    assert first.loc[bounced_sms["user_id"], "phone"].notna().all()


def test_suppression_rates_are_believable() -> None:
    """The suppression list of 20,000 customers (built alone: people, then suppressions) against
    the rates in jobs/simulator/suppressions.py, within about four standard deviations."""
    from jobs.simulator.catalogue import _make_products
    from jobs.simulator.people import _make_users
    from jobs.simulator.spec import _calendar
    from jobs.simulator.suppressions import MONTH_NS, _make_suppressions

    spec = SimulationSpec(seed=12, days=30, users=20_000, products=40)
    cal = _calendar(spec)
    users = _make_users(spec, cal, _make_products(spec, cal)[1])
    rows = _make_suppressions(spec, cal, users)
    profile = users["frame"].set_index("user_id")  # as registered
    months = pd.Series((cal.day_start[-1] - users["signup"]) / MONTH_NS, index=profile.index)  # exposure

    def rate(channel: str, reason: str, who: pd.Series) -> float:
        hits = rows[(rows["channel"] == channel) & (rows["reason"] == reason)]
        return len(hits) / float(months[who].sum())

    # ~0.5% a month of the customers who get marketing email: ~0.3% of all registered customers
    email = rate("email", "unsubscribed", profile["consent_email"])
    assert 0.004 < email < 0.006, email
    everyone = pd.Series(True, index=profile.index)
    assert 0.002 <= rate("email", "unsubscribed", everyone) <= 0.005
    sms = rate("sms", "unsubscribed", profile["consent_sms"] & profile["phone"].notna())
    assert 0.0045 < sms < 0.0075, sms
    assert 0 < (rows["reason"] == "complained").sum() / float(months.sum()) < 0.001  # rare
    assert 0 < (rows["channel"] == "all").sum() < 0.02 * spec.users  # a few
    bounced = rows[(rows["channel"] == "email") & (rows["reason"] == "bounced")]
    assert 0.012 < len(bounced) / profile["email"].notna().sum() < 0.018  # ~1.5% of addresses, once
    in_period = rows["suppressed_at"].array.asi8 >= cal.day_start[0]
    assert 0.1 < in_period.mean() < 0.5  # a month of a history that reaches back up to 1.5 years


def test_lifecycle_truth_is_consistent(world: World) -> None:
    life = world.truth["lifecycle_daily"]
    assert set(life["true_state"].astype(str)) <= set(LIFECYCLE_STATES)
    assert life.groupby("user_id")["date"].count().max() == SMALL.days
    signup_day = world.truth["users"].set_index("user_id")["signup_at"].dt.tz_convert(TZ).dt.date
    first_day = life.groupby("user_id")["date"].min().dt.date
    assert (first_day >= signup_day[first_day.index].clip(lower=SMALL.start_date)).all()
    # churned users do not visit
    sessions = world.truth["sessions"]
    logged = sessions[sessions["user_id"] > 0]
    visits = pd.DataFrame(
        {
            "user_id": logged["user_id"],
            "date": logged["started_at"].dt.tz_convert(TZ).dt.tz_localize(None).dt.normalize(),
        }
    )
    states = visits.merge(life, on=["user_id", "date"], how="left")
    assert states["true_state"].notna().all()
    assert not (states["true_state"] == "churned").any()


def test_bots_and_late_files_exist(world: World) -> None:
    ev = world.events
    bots = ev[ev["is_bot"]]
    assert bots["user_id"].isna().all()
    per_minute = bots.groupby(["session_id", bots["event_ts"].dt.floor("min")]).size()
    assert per_minute.groupby(level=0).max().min() >= 60
    lag = ev["write_ts"] - ev["event_ts"]
    late = ev[lag > pd.Timedelta(hours=20)]
    assert len(late) > 0
    days_late = (late["write_ts"].dt.date - late["event_ts"].dt.date).map(lambda d: d.days)
    assert days_late.between(1, 2).all()


# --------------------------------------------------------------------------------------------
# materialize()
# --------------------------------------------------------------------------------------------


def test_incremental_materialize_equals_direct(world: World, tmp_path: Path) -> None:
    d, d1 = _day(SMALL, 3), _day(SMALL, 4)
    inc, direct = tmp_path / "inc", tmp_path / "direct"
    first = _materialize(world, inc, d)
    some_key = next(iter(sorted(_landing_bytes(inc))))
    before = os.stat(inc / "landing" / some_key)
    second = _materialize(world, inc, d1)
    _materialize(world, direct, d1)

    assert first["files_written"] > 0 and second["files_written"] > 0
    assert _landing_bytes(inc) == _landing_bytes(direct)
    after = os.stat(inc / "landing" / some_key)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # not rewritten
    assert _db_rows(inc) == _db_rows(direct)
    for name in ("landing_files", "orders", "users", "lifecycle_daily", "events_daily", "suppressions"):
        assert (inc / "truth" / f"{name}.parquet").read_bytes() == (
            direct / "truth" / f"{name}.parquet"
        ).read_bytes(), name
    again = _materialize(world, inc, d1)  # a re-run changes nothing
    assert again["files_written"] == 0 and sum(again["rows_upserted"].values()) == 0


def test_only_complete_hours_are_written(world: World, tmp_path: Path) -> None:
    as_of = _day(SMALL, 2)
    _materialize(world, tmp_path, as_of)
    end = _end_utc(as_of)
    hours = {
        datetime.strptime(k.split("events-")[1][:10], "%Y%m%d%H").replace(tzinfo=ZoneInfo("UTC"))
        for k in _landing_bytes(tmp_path)
    }
    assert max(hours) + timedelta(hours=1) <= end
    assert max(hours) == end - timedelta(hours=1)  # the last hour of the day is there
    truth = pd.read_parquet(tmp_path / "truth" / "landing_files.parquet")
    assert set(truth["key"]) == set(_landing_bytes(tmp_path))
    window_start = end - timedelta(days=1)
    for key in truth.loc[truth["local_logical_date"] == as_of, "key"]:
        hour = datetime.strptime(key.split("events-")[1][:10], "%Y%m%d%H").replace(tzinfo=ZoneInfo("UTC"))
        assert window_start <= hour < end
    rows = _db_rows(tmp_path)
    created = [datetime.fromisoformat(r[3]).replace(tzinfo=ZoneInfo("UTC")) for r in rows["orders"]]
    assert created and max(created) < end
    assert len(rows["users"]) < SMALL.users


def test_landing_truth_matches_the_files(world: World, tmp_path: Path) -> None:
    last = _day(SMALL, SMALL.days - 1)
    _materialize(world, tmp_path, last)
    truth = pd.read_parquet(tmp_path / "truth" / "landing_files.parquet").set_index("key")
    kinds = ["n_valid", "n_duplicate", *[f"n_{k}" for k in REJECT_KINDS]]
    assert (truth["n_lines"] == truth[kinds].sum(axis=1)).all()
    for kind in kinds:
        assert truth[kind].sum() > 0, kind

    found = _check_landing(tmp_path, set(world.products["product_id"])).set_index("key")
    for column in ["n_lines", *kinds]:
        got = found[column] if column in found else pd.Series(0, index=found.index)
        assert got.reindex(truth.index).fillna(0).astype(int).tolist() == truth[column].tolist(), column

    valid = found.attrs["valid_events"]
    logical = truth["local_logical_date"]
    late = Counter(
        key for key, obj in valid if datetime.fromisoformat(obj["event_ts"]).astimezone(TZ).date() < logical[key]
    )
    assert [late.get(k, 0) for k in truth.index] == truth["n_late"].tolist()
    events = pd.DataFrame([obj for _, obj in valid])
    events["key"] = [key for key, _ in valid]
    events["minute"] = pd.to_datetime(events["event_ts"], utc=True, format="ISO8601").dt.floor("min")
    busy = events.groupby(["session_id", "minute"]).size()
    bot_sessions = set(busy[busy > 30].index.get_level_values(0))
    bots = events[events["session_id"].isin(bot_sessions)].groupby("key").size()
    assert bots.reindex(truth.index).fillna(0).astype(int).tolist() == truth["n_bot"].tolist()

    # valid lines have exactly the interface keys, plus an occasional known extra field
    extras = Counter(k for _, obj in valid for k in obj if k not in EVENT_KEYS)
    assert set(extras) <= {"app_version", "experiment"} and extras
    assert all(list(obj)[: len(EVENT_KEYS)] == list(EVENT_KEYS) for _, obj in valid[:2000])
    offsets = Counter(obj["event_ts"][23:] for _, obj in valid)
    assert offsets.most_common(1)[0][0] == "+08:00"
    assert offsets["+08:00"] / sum(offsets.values()) > 0.9 and len(offsets) > 1


def test_dirt_rate_zero_gives_clean_data(tmp_path: Path) -> None:
    spec = SimulationSpec(seed=5, days=4, users=200, products=40, dirt_rate=0.0)
    w = generate(spec)
    last = _day(spec, spec.days - 1)
    _materialize(w, tmp_path, last)
    truth = pd.read_parquet(tmp_path / "truth" / "landing_files.parquet")
    dirt = ["n_duplicate", "n_bot", *[f"n_{k}" for k in REJECT_KINDS]]
    assert (truth[dirt] == 0).all().all()
    assert (truth["n_lines"] == truth["n_valid"]).all()
    assert not truth["is_late_batch"].any()
    found = _check_landing(tmp_path, set(w.products["product_id"]))
    assert (found["n_lines"] == found["n_valid"]).all()
    for _, obj in found.attrs["valid_events"]:
        assert list(obj) == list(EVENT_KEYS)
        assert obj["event_ts"].endswith("+08:00")
    assert not w.events["is_bot"].any() and w.events["dirt"].isna().all()
    assert w.orders["dirt_reason"].isna().all() and w.order_items["dirt_reason"].isna().all()


def test_the_source_holds_the_suppressions_recorded_by_the_end_of_the_day(world: World, tmp_path: Path) -> None:
    d = _day(SMALL, 3)
    _materialize(world, tmp_path, d)
    rows = _db_rows(tmp_path)["suppressions"]
    expected = world.suppressions[world.suppressions["suppressed_at"] < _end_utc(d)]
    assert len(rows) == len(expected) < len(world.suppressions)
    assert {(r[0], r[1], r[2]) for r in rows} == set(expected[["user_id", "channel", "reason"]].itertuples(index=False))
    truth = pd.read_parquet(tmp_path / "truth" / "suppressions.parquet")
    assert list(truth.columns) == ["user_id", "channel", "reason", "suppressed_at"] and len(truth) == len(rows)


def test_order_status_changes_across_days(world: World, tmp_path: Path) -> None:
    history = world.order_status_history
    local_day = history["changed_at"].dt.tz_convert(TZ).dt.date
    created = history[history["status"] == "created"].assign(day=local_day)
    shipped = history[history["status"] == "shipped"].assign(day=local_day)
    both = created.merge(shipped, on="order_id", suffixes=("_c", "_s"))
    last = _day(SMALL, SMALL.days - 1)
    candidate = both[(both["day_s"] > both["day_c"]) & (both["day_s"] <= last)].iloc[0]
    order_id, d, later = int(candidate["order_id"]), candidate["day_c"], candidate["day_s"]

    def state(as_of: date) -> tuple:
        _materialize(world, tmp_path, as_of)
        with sqlite3.connect(tmp_path / "src" / "shop.db") as conn:
            return conn.execute(
                "SELECT status, paid_at, updated_at FROM orders WHERE order_id = ?", (order_id,)
            ).fetchone()

    early, late = state(d), state(later)
    assert early[0] in ("created", "paid") and late[0] == "shipped"
    assert late[2] > early[2]
    assert late[1] is not None
    with sqlite3.connect(tmp_path / "src" / "shop.db") as conn:
        count = conn.execute("SELECT COUNT(*) FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    assert count == (1,)


def test_simulate_uses_the_configuration(tmp_path: Path) -> None:
    config = PipelineConfig(
        storage=StorageConfig(landing_root=str(tmp_path / "landing"), state_root=str(tmp_path / "state")),
        source=SourceConfig(url=f"sqlite:///{tmp_path}/source/shop.db"),
    )
    spec = SimulationSpec(seed=1, days=3, users=120, products=30)
    summary = simulate(config, spec)
    assert summary["as_of"] == "2026-09-03"
    assert summary["files_written"] == len(list((tmp_path / "landing").rglob("*.jsonl.gz"))) > 0
    assert (tmp_path / "state" / "truth" / "landing_files.parquet").is_file()
    meta = json.loads((tmp_path / "state" / "truth" / "simulation.json").read_text())
    assert meta["as_of"] == "2026-09-03" and meta["spec"]["users"] == 120
    with sqlite3.connect(tmp_path / "source" / "shop.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 120


@pytest.mark.integration
def test_materialize_to_an_s3_api_server(tmp_path: Path, s3_server: str, aws_env) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="shop")
    spec = SimulationSpec(seed=2, days=2, users=80, products=20)
    w = generate(spec)
    landing = open_storage("s3://shop/landing", endpoint_url=s3_server)
    summary = materialize(w, landing, f"sqlite:///{tmp_path}/shop.db", _day(spec, 1), tmp_path / "truth")
    keys = {info.key for info in landing.list("events/")}
    truth = pd.read_parquet(tmp_path / "truth" / "landing_files.parquet")
    assert keys == set(truth["key"]) and len(keys) == summary["files_written"] > 0
    first = sorted(keys)[0]
    assert landing.exists(first)
    lines = gzip.decompress(landing.read_bytes(first)).decode().splitlines()
    assert len(lines) == int(truth.set_index("key").loc[first, "n_lines"])
    again = materialize(w, landing, f"sqlite:///{tmp_path}/shop.db", _day(spec, 1), tmp_path / "truth")
    assert again["files_written"] == 0
