"""Campaign allocation and exports on the small simulated shop (real Spark, DuckDB, local
object store): the published rows keep every rule, the groups can be recomputed in SQL, the
exports match their manifests and carry contact data for consented targets only."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from jobs.activation.allocate import FUNNEL_STEPS
from jobs.activation.campaigns_config import CONSENT_FIELD, load_campaigns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def query(config, sql: str, **params) -> pd.DataFrame:
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql), params)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


@pytest.fixture(scope="module")
def shop(small_shop):
    return small_shop  # its last night allocated and exported


def test_published_targets_keep_suppression_priority_and_the_holdout_rule(shop):
    config, day = shop.config, shop.last
    targets = query(config, "select * from mart_campaign_targets where snapshot_date = :d", d=day)
    profile = query(config, "select * from mart_user_profile where snapshot_date = :d", d=day).set_index("user_id")
    funnel = query(config, "select * from mart_campaign_funnel where snapshot_date = :d", d=day)
    settings = load_campaigns()
    assert len(funnel) == len(settings.active(day)) and len(targets) > 0
    assert targets["user_id"].is_unique  # one campaign per customer and day
    for row in funnel.itertuples():
        assert row.eligible == sum(getattr(row, step) for step in FUNNEL_STEPS[1:])  # every step counted once
        mine = targets[targets["campaign_id"] == row.campaign_id]
        assert (row.control, row.target) == ((mine["arm"] == "control").sum(), (mine["arm"] == "target").sum())
        consent = CONSENT_FIELD[row.channel]
        assert profile.loc[mine["user_id"], consent].all()
    # the groups and the global holdout, recomputed by the warehouse's own md5
    recomputed = query(
        config,
        "select t.campaign_id, t.user_id, t.arm, t.bucket, "
        "cast(('0x' || substr(md5(t.campaign_id || ':' || 'v' || cast(t.campaign_version as varchar) || ':' || "
        "cast(t.user_id as varchar)), 1, 8)) as ubigint) % 10000 as sql_bucket, "
        "cast(('0x' || substr(md5(:salt || ':' || cast(t.user_id as varchar)), 1, 8)) as ubigint) % 10000 "
        "as global_bucket from mart_campaign_targets t where t.snapshot_date = :d",
        d=day,
        salt=settings.global_holdout.salt,
    )
    assert (recomputed["bucket"] == recomputed["sql_bucket"]).all()
    assert (recomputed["global_bucket"] >= settings.global_holdout.share * 10_000).all()
    shares = funnel.set_index("campaign_id")["holdout_share"]
    expected_arm = recomputed["bucket"] < recomputed["campaign_id"].map(shares) * 10_000
    assert ((recomputed["arm"] == "control") == expected_arm).all()
    contacts = query(config, "select * from fct_campaign_contacts where contact_date = :d", d=day)
    assert len(contacts) == len(targets)


def test_exports_match_their_manifests_and_hold_contacts_for_consented_targets_only(shop):
    from jobs.activation.export import export_prefix, exports_storage

    config, day = shop.config, shop.last
    storage = exports_storage(config)
    funnel = query(config, "select * from mart_campaign_funnel where snapshot_date = :d", d=day)
    targets = query(config, "select * from mart_campaign_targets where snapshot_date = :d and arm = 'target'", d=day)
    exported = 0
    for row in funnel.itertuples():
        prefix = export_prefix(row.campaign_id, day)
        manifest = json.loads(storage.read_bytes(prefix + "_manifest.json"))
        for name, entry in manifest["files"].items():
            data = storage.read_bytes(prefix + name)
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        csv = pd.read_csv(io.BytesIO(storage.read_bytes(prefix + "targets.csv")), dtype={"phone": str})
        parquet = pq.read_table(io.BytesIO(storage.read_bytes(prefix + "targets.parquet"))).to_pandas()
        assert len(csv) == len(parquet) == manifest["rows"] == row.exported
        assert csv["user_id"].tolist() == parquet["user_id"].tolist()
        mine = targets[targets["campaign_id"] == row.campaign_id]
        assert set(csv["user_id"]) <= set(mine["user_id"])  # target group only
        assert manifest["rows"] + sum(manifest["left_out"].values()) == len(mine)
        contact = {"email": "email", "sms": "phone"}.get(row.channel)
        if contact:
            assert csv[contact].notna().all() and contact in csv.columns
        assert not {"email", "phone"} - {contact} & set(csv.columns)  # only the channel's contact field
        exported += manifest["rows"]
    assert exported > 0
    # contact data never reaches the warehouse's campaign tables
    for table in ("mart_campaign_targets", "mart_campaign_funnel", "fct_campaign_contacts"):
        assert not {"email", "phone"} & set(query(config, f"select * from {table} limit 0").columns)


def test_rerunning_a_date_gives_the_same_lists_and_the_cap_reads_the_contact_history(shop):
    from jobs.platform.stages import run_pipeline

    config, day = shop.config, shop.last
    run_pipeline(config, day, ["allocate"])  # on what is published now (other tests add, e.g., association rules)
    before = query(config, "select * from mart_campaign_targets where snapshot_date = :d", d=day)
    run_pipeline(config, day, ["allocate"])
    after = query(config, "select * from mart_campaign_targets where snapshot_date = :d", d=day)
    key = ["campaign_id", "user_id"]
    columns = [c for c in before.columns if c != "loaded_at"]
    pd.testing.assert_frame_equal(
        before[columns].sort_values(key).reset_index(drop=True), after[columns].sort_values(key).reset_index(drop=True)
    )
    assert len(query(config, "select * from fct_campaign_contacts where contact_date = :d", d=day)) == len(after)

    # customers contacted twice in the six days before D reach the cap of 2 and drop out
    capped = after["user_id"].head(5).tolist()
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for offset in (1, 3):
            for user in capped:
                conn.execute(
                    sa.text(
                        "insert into fct_campaign_contacts values (:d, 'earlier', :u, 'target', 1, 'email', 7, now())"
                    ),
                    {"d": day - timedelta(days=offset), "u": user},
                )
    try:
        run_pipeline(config, day, ["allocate"])
        again = query(config, "select * from mart_campaign_targets where snapshot_date = :d", d=day)
        assert not set(capped) & set(again["user_id"])
        funnel = query(config, "select sum(capped) as capped from mart_campaign_funnel where snapshot_date = :d", d=day)
        assert funnel["capped"].iloc[0] >= len(capped)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("delete from fct_campaign_contacts where campaign_id = 'earlier'"))
        run_pipeline(config, day, ["allocate", "export"])


def test_postgresql_recomputes_the_same_buckets(postgres_url):
    """The documented SQL for PostgreSQL gives the buckets the allocation uses."""
    import numpy as np

    from jobs.activation.allocate import buckets

    users = np.arange(1, 5001)
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        sql = sa.text(
            "select (('x' || substr(md5(:salt || ':' || u), 1, 8))::bit(32)::bigint % 10000) "
            "from generate_series(1, 5000) u order by u"
        )
        recomputed = np.array([row[0] for row in conn.execute(sql, {"salt": "winback_high_value:v1"})])
    assert (recomputed == buckets("winback_high_value:v1", users)).all()


def test_measure_reads_each_closed_cohort_once_against_the_orders(shop):
    """Two cohorts in the contact history: one whose window closed by D is measured (every
    metric, means equal to a pandas count from fct_orders), the other waits; re-running D
    replaces its rows."""
    from jobs.platform.interface import PURCHASE_STATUSES
    from jobs.platform.stages import run_pipeline

    config, day = shop.config, shop.last
    closed_on, open_on = day - timedelta(days=6), day - timedelta(days=2)
    users = query(config, "select user_id from dim_user order by user_id")["user_id"].tolist()
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for contact_date in (closed_on, open_on):
            for n, user in enumerate(users):
                arm = "control" if n % 10 == 0 else "target"
                conn.execute(
                    sa.text("insert into fct_campaign_contacts values (:d, 'probe', :u, :arm, 1, 'email', 5, now())"),
                    {"d": contact_date, "u": user, "arm": arm},
                )
    try:
        run_pipeline(config, day, ["measure"])
        first = query(config, "select * from mart_campaign_results where campaign_id = 'probe'")
        run_pipeline(config, day, ["measure"])
        again = query(config, "select * from mart_campaign_results where campaign_id = 'probe'")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("delete from fct_campaign_contacts where campaign_id = 'probe'"))
            conn.execute(sa.text("delete from mart_campaign_results where campaign_id = 'probe'"))
    assert set(first["cohort_date"].astype(str)) == {closed_on.isoformat()}  # the open window waits
    assert set(zip(first["metric"], first["adjustment"], strict=True)) == {
        ("conversion_rate", "none"), ("orders_per_customer", "none"), ("revenue_per_customer", "none"),
        ("revenue_per_customer", "cuped"), ("average_order_value", "none"),
    }  # fmt: skip
    assert len(again) == len(first)
    orders = query(config, "select user_id, order_date, status from fct_orders")
    orders["order_date"] = pd.to_datetime(orders["order_date"]).dt.date
    window = orders[
        orders["status"].isin(PURCHASE_STATUSES)
        & (orders["order_date"] > closed_on)
        & (orders["order_date"] <= closed_on + timedelta(days=5))
    ]
    arms = pd.Series(["control" if n % 10 == 0 else "target" for n in range(len(users))], index=users)
    bought = pd.Series(arms.index.isin(window["user_id"]), index=arms.index)
    conversion = first[first["metric"] == "conversion_rate"].iloc[0]
    assert conversion["mean_target"] == pytest.approx(bought[arms == "target"].mean())
    assert conversion["mean_control"] == pytest.approx(bought[arms == "control"].mean())
    assert (conversion["n_target"], conversion["n_control"]) == ((arms == "target").sum(), (arms == "control").sum())
