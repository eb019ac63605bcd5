"""Customer tags: config validation, each tag kind on hand-computed cases, order and interest
features, the anomaly score, and interests against the simulator's true affinities."""

from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from jobs.customers.tags import compute_tags, event_features, interest_scores, order_features
from jobs.customers.tags_config import DEFAULT_TAGS, TagsConfig, load_tags
from jobs.platform.daily import user_days, user_item_days
from jobs.platform.errors import ConfigError
from models.anomaly import anomaly_scores

AS_OF = date(2026, 10, 31)
TAGS = load_tags()


def tags_config(*tags, **settings) -> TagsConfig:
    return TagsConfig.model_validate({**settings, "tags": list(tags)})


def write_tags(tmp_path, tags, **settings):
    path = tmp_path / "tags.yaml"
    path.write_text(yaml.safe_dump({**settings, "tags": tags}))
    return path


def test_the_shipped_tags_cover_every_family_the_marketers_asked_for():
    names = {t.name for t in TAGS.tags}
    assert {"gender", "age_band", "region", "interest_category", "interest_brand", "spending_power", "loyalty",
            "price_sensitivity", "preferred_channel", "engagement", "risk"} <= names  # fmt: skip


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (
            {"kind": "rules", "rules": [{"value": "x", "when": {"purchase": {"gte": 1}}}]},
            "unknown feature 'purchase'",
        ),
        (
            {"kind": "rules", "rules": [{"value": "x", "when": {"region": {"gte": 1}}}]},
            "belongs to source 'users'",
        ),
        (
            {"kind": "rules", "rules": [{"value": "x", "when": {"orders": {"gte": "3"}}}]},
            "'3' is not a number",
        ),
        (
            {
                "kind": "rules",
                "rules": [{"value": "x", "when": {"preferred_order_channel": {"lt": "a"}}}],
            },
            "does not apply to a string",
        ),
        (
            {
                "kind": "quantile_tiers",
                "features": ["net_spend"],
                "tiers": [{"value": "a"}, {"value": "b", "below": 0.5}],
            },
            "the last one is open",
        ),
        ({"kind": "attribute"}, "needs 'feature'"),
        ({"kind": "top_n", "dimension": "category"}, "kind top_n reads source interest"),
    ],
)
def test_a_bad_tag_is_a_one_line_error_naming_it(tmp_path, tag, message):
    path = write_tags(tmp_path, [{"name": "vip", "description": "d", "source": "orders", **tag}])
    with pytest.raises(ConfigError) as error:
        load_tags(path)
    text = str(error.value)
    assert "\n" not in text and "tags.0(vip)" in text and message in text, text


def test_duplicate_tag_names_are_rejected(tmp_path):
    tag = {
        "name": "g",
        "description": "d",
        "source": "users",
        "kind": "attribute",
        "feature": "gender",
    }
    with pytest.raises(ConfigError, match="tag names must be unique: g"):
        load_tags(write_tags(tmp_path, [tag, tag]))


def features_frame(spark, rows):
    """rows of dicts; every feature a tag may read, defaults null/0."""
    columns = {
        "user_id": "long", "gender": "string", "age": "int", "orders": "long", "purchases": "long",
        "net_spend": "double", "avg_order_value": "double", "repeat_rate": "double", "refund_rate": "double",
        "is_anomaly": "boolean", "anomaly_score": "double", "users_evidence_date": "date",
        "orders_evidence_date": "date", "events_evidence_date": "date", "active_days_30": "long",
    }  # fmt: skip
    data = [tuple(row.get(c, 0 if columns[c] == "long" and c != "user_id" else None) for c in columns) for row in rows]
    return spark.createDataFrame(data, ", ".join(f"{c} {t}" for c, t in columns.items()))


def tag_rows(frame, config, interest=None):
    return {
        (r["user_id"], r["tag"], r["rank"]): (r["value"], r["score"])
        for r in compute_tags(frame, interest, config, AS_OF).collect()
    }


def test_rules_take_the_first_match_then_the_default_and_respect_where_and_freshness(spark):
    config = tags_config(
        {"name": "risk", "description": "d", "source": "orders", "kind": "rules", "score": "refund_rate",
         "default": "normal", "where": {"orders": {"gte": 1}}, "freshness_days": 30,
         "rules": [{"value": "refunder", "when": {"orders": {"gte": 3}, "refund_rate": {"gte": 0.3}}},
                   {"value": "odd", "when": {"is_anomaly": {"eq": True}}}]},
    )  # fmt: skip
    recent, stale = AS_OF - timedelta(days=5), AS_OF - timedelta(days=60)
    frame = features_frame(spark, [
        {"user_id": 1, "orders": 4, "refund_rate": 0.5, "is_anomaly": True, "orders_evidence_date": recent},
        {"user_id": 2, "orders": 2, "refund_rate": 0.5, "is_anomaly": True, "orders_evidence_date": recent},
        {"user_id": 3, "orders": 1, "refund_rate": 0.0, "orders_evidence_date": recent},
        {"user_id": 4, "orders": 0},  # outside the population
        {"user_id": 5, "orders": 5, "refund_rate": 1.0, "orders_evidence_date": stale},  # too old
    ])  # fmt: skip
    got = tag_rows(frame, config)
    assert got == {
        (1, "risk", 1): ("refunder", 0.5),
        (2, "risk", 1): ("odd", 0.5),
        (3, "risk", 1): ("normal", 0.0),
    }


def test_quantile_tiers_cut_the_mean_percentile_of_the_population(spark):
    config = tags_config(
        {"name": "spend", "description": "d", "source": "orders", "kind": "quantile_tiers",
         "features": ["net_spend", "avg_order_value"], "where": {"purchases": {"gte": 1}},
         "tiers": [{"value": "low", "below": 0.5}, {"value": "high"}]},
    )  # fmt: skip
    rows = [{"user_id": u, "purchases": 1, "net_spend": 10.0 * u, "avg_order_value": 10.0 * u} for u in range(1, 6)]
    rows.append({"user_id": 9, "purchases": 0, "net_spend": 1e6, "avg_order_value": 1e6})  # not in the population
    got = tag_rows(features_frame(spark, rows), config)
    # percent ranks of users 1..5 are 0, .25, .5, .75, 1 on both features
    assert got == {
        (1, "spend", 1): ("low", 0.0), (2, "spend", 1): ("low", 0.25), (3, "spend", 1): ("high", 0.5),
        (4, "spend", 1): ("high", 0.75), (5, "spend", 1): ("high", 1.0),
    }  # fmt: skip


def test_attribute_tags_skip_missing_values(spark):
    config = tags_config(
        {
            "name": "sex",
            "description": "d",
            "source": "users",
            "kind": "attribute",
            "feature": "gender",
        }
    )
    got = tag_rows(features_frame(spark, [{"user_id": 1, "gender": "F"}, {"user_id": 2}]), config)
    assert got == {(1, "sex", 1): ("F", None)}


def orders_frame(spark, rows):
    """rows: (user_id, days_before, amount, status, discount, coupon, channel)"""
    return spark.createDataFrame(
        [
            (i, u, AS_OF - timedelta(days=d), float(a), s, float(disc), c, ch)
            for i, (u, d, a, s, disc, c, ch) in enumerate(rows)
        ],
        "order_id long, user_id long, order_date date, total_amount double, status string, "
        "discount_amount double, coupon_code string, channel string",
    )


def test_order_features_on_a_hand_computed_case(spark):
    rows = [
        (1, 400, 50, "completed", 0, None, "web"),   # first purchase ever, outside the lookback
        (1, 100, 100, "completed", 10, None, "app"),
        (1, 50, 300, "completed", 0, "SAVE10", "app"),
        (1, 10, 200, "paid", 0, None, "app"),
        (1, 5, 80, "refunded", 0, None, "web"),
        (1, 3, 90, "cancelled", 0, None, "web"),
    ]  # fmt: skip
    (row,) = order_features(orders_frame(spark, rows), ("paid", "shipped", "completed"), AS_OF, 365).collect()
    assert (
        row["orders"],
        row["purchases"],
        row["net_spend"],
        row["avg_order_value"],
        row["max_order_value"],
    ) == (5, 3, 600.0, 200.0, 300.0)
    assert row["promo_share"] == pytest.approx(2 / 3) and row["discount_share"] == pytest.approx(1 / 3)
    assert row["coupon_share"] == pytest.approx(1 / 3)
    assert (row["cancel_rate"], row["refund_rate"], row["repeat_rate"]) == (
        0.2,
        0.2,
        pytest.approx(2 / 3),
    )
    assert (row["tenure_days"], row["days_since_last_order"], row["preferred_order_channel"]) == (
        400,
        3,
        "app",
    )


def test_event_features_count_days_sessions_and_preferences(spark):
    events = spark.createDataFrame(
        [(1, "product_view", AS_OF - timedelta(days=d), s, 7, ch, "ios") for d, s, ch in
         [(0, "a", "app"), (0, "a", "app"), (40, "b", "web"), (200, "c", "web")]],
        "user_id long, event_type string, event_date date, session_id string, product_id long, channel string, device string",
    )  # fmt: skip
    (row,) = event_features(user_days(events), AS_OF, 90).collect()
    assert (row["active_days"], row["active_days_30"], row["sessions"], row["product_views"]) == (
        2,
        1,
        2,
        3,
    )
    assert (row["preferred_channel"], row["days_since_last_visit"]) == ("app", 0)


def test_interest_weighs_behaviour_and_purchases_with_time_decay(spark):
    products = spark.createDataFrame(
        [(1, "Books", "Acme"), (2, "Toys", "Zed")],
        "product_id long, category_l1 string, brand string",
    )
    noon = datetime.combine(AS_OF, time(12))
    events = spark.createDataFrame(
        [(1, "product_view", noon, AS_OF, 1), (1, "product_view", noon, AS_OF, 1), (1, "page_view", noon, AS_OF, 1)],
        "user_id long, event_type string, event_at timestamp, event_date date, product_id long",
    )
    items = spark.createDataFrame(
        [(1, 2, AS_OF - timedelta(days=30))], "user_id long, product_id long, order_date date"
    )
    settings = TAGS.interest.model_copy(update={"half_life_days": 30.0})
    got = {
        (r["dimension"], r["rank"]): (r["value"], r["share"])
        for r in interest_scores(user_item_days(events), items, products, AS_OF, settings, 3).collect()
    }
    # Books: 2 views x 1 today = 2; Toys: one purchase x 6 a half-life ago = 3; page views carry no product weight
    assert got == {
        ("category", 1): ("Toys", 0.6),
        ("category", 2): ("Books", 0.4),
        ("brand", 1): ("Zed", 0.6),
        ("brand", 2): ("Acme", 0.4),
    }


def test_top_n_tags_keep_the_strongest_values_above_the_minimum_share(spark):
    interest = spark.createDataFrame(
        [(1, "category", "Toys", 0.6, 1, AS_OF), (1, "category", "Books", 0.35, 2, AS_OF), (1, "category", "Tea", 0.05, 3, AS_OF),
         (2, "category", "Tea", 1.0, 1, AS_OF - timedelta(days=100))],
        "user_id long, dimension string, value string, share double, rank int, evidence_date date",
    )  # fmt: skip
    config = tags_config({"name": "likes", "description": "d", "source": "interest", "kind": "top_n", "dimension": "category",
                          "top": 3, "min_share": 0.1, "freshness_days": 90})  # fmt: skip
    got = tag_rows(features_frame(spark, [{"user_id": 1}]), config, interest)
    assert got == {
        (1, "likes", 1): ("Toys", 0.6),
        (1, "likes", 2): ("Books", 0.35),
    }  # user 2's interest is stale


def test_isolation_forest_flags_unusual_order_behaviour():
    rng = np.random.default_rng(3)
    n = 500
    normal = pd.DataFrame(
        {
            "user_id": np.arange(n),
            "orders": rng.poisson(3, n) + 1,
            "avg_order_value": rng.lognormal(4.5, 0.4, n),
            "max_order_value": rng.lognormal(4.8, 0.4, n),
            "cancel_rate": rng.beta(1, 20, n),
            "refund_rate": rng.beta(1, 30, n),
            "promo_share": rng.beta(2, 5, n),
        }
    )
    odd = pd.DataFrame(
        {"user_id": [n, n + 1, n + 2], "orders": [60, 2, 40], "avg_order_value": [90.0, 9000.0, 100.0],
         "max_order_value": [150.0, 15000.0, 400.0], "cancel_rate": [0.9, 0.0, 0.1], "refund_rate": [0.0, 0.0, 0.8],
         "promo_share": [1.0, 0.0, 1.0]}
    )  # fmt: skip
    scores = anomaly_scores(pd.concat([normal, odd], ignore_index=True), TAGS.anomaly).set_index("user_id")
    assert scores.loc[[n, n + 1, n + 2], "is_anomaly"].all()
    assert scores["is_anomaly"].mean() <= TAGS.anomaly.contamination + 0.01
    assert scores.loc[[n, n + 1, n + 2], "anomaly_score"].min() > scores.loc[: n - 1, "anomaly_score"].quantile(0.95)
    assert anomaly_scores(normal.head(10), TAGS.anomaly).empty  # too few customers: no scores


def test_interest_tags_recover_the_simulators_true_top_category(spark):
    """Stated margin: the rank-1 interest_category matches the simulator's true top category
    for at least 60% of users with enough signals, against ~30% for always guessing the most
    common category."""
    from jobs.simulator import SimulationSpec, generate

    spec = SimulationSpec(days=60, users=1500, seed=11, dirt_rate=0.0)
    world = generate(spec)
    as_of = spec.start_date + timedelta(days=spec.days - 1)
    ev = world.events[world.events["user_id"].notna() & ~world.events["is_bot"]]
    events = spark.createDataFrame(
        pd.DataFrame(
            {
                "user_id": ev["user_id"].astype("int64"),
                "event_type": ev["event_type"].astype(str),
                "event_at": ev["event_ts"].dt.tz_localize(None),
                "event_date": ev["local_date"].dt.date,
                "product_id": ev["product_id"].astype("float").astype("Int64"),
            }
        )
    )
    orders = world.orders[world.orders["final_status"].isin(["paid", "shipped", "completed"])]
    lines = world.order_items.merge(orders[["order_id", "user_id", "created_at"]], on="order_id")
    items = spark.createDataFrame(
        pd.DataFrame(
            {
                "user_id": lines["user_id"].astype("int64"),
                "product_id": lines["product_id"].astype("int64"),
                "order_date": lines["created_at"].dt.tz_convert(spec.timezone).dt.date,
            }
        )
    )
    products = spark.createDataFrame(world.products[["product_id", "category_l1", "brand"]])
    interest = interest_scores(user_item_days(events), items, products, as_of, TAGS.interest, 1).toPandas()
    top = interest[interest["dimension"] == "category"].merge(
        world.truth["users"][["user_id", "top_category"]], on="user_id"
    )
    signals = ev.groupby("user_id").size()
    top = top[top["user_id"].map(signals).fillna(0) >= 20]
    agreement = (top["value"] == top["top_category"]).mean()
    baseline = top["top_category"].value_counts(normalize=True).iloc[0]
    assert len(top) > 300
    assert agreement >= 0.6 and agreement > 2 * baseline, (agreement, baseline)


def test_the_default_config_file_is_the_one_loaded():
    assert DEFAULT_TAGS.name == "tags.yaml" and TAGS == load_tags(DEFAULT_TAGS)
