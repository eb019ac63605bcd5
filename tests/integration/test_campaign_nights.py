"""Three nights of campaigns on the small simulated shop, whose customers answer them (real
Spark, DuckDB, local object store; the stages in process; see tests/integration/conftest.py).

Every night the simulator first reads the exports of the nights before, the way the shop's
messaging system would, and its contacted customers buy with each campaign's true uplift; then
the pipeline collects, publishes the customers, allocates, exports and measures. Checked on
every published row of the three nights: suppression, consent, the global holdout, one campaign
per customer and day, the 7-day cap, groups that never change across nights with the
configured share, exports equal to the target rows and their manifests; the answers reach the
warehouse; and the cohort of the first night, measured on the third, finds the uplift planted.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from jobs.platform.lake import window_for
from tests.integration.conftest import SMALL_SHOP

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

BROAD = "weekly_newsletter"  # sent on Mondays to everyone who can be e-mailed, 20% held out
LAST = SMALL_SHOP.start_date + timedelta(days=SMALL_SHOP.days - 1)
NIGHTS = [LAST - timedelta(days=2), LAST - timedelta(days=1), LAST]


def query(config, sql: str, **params) -> pd.DataFrame:
    from jobs.platform.warehouse import query_frame

    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return query_frame(conn, sql, **params)


@pytest.fixture(scope="module")
def nights(small_shop):
    assert small_shop.nights == NIGHTS and [d.strftime("%a") for d in NIGHTS] == ["Mon", "Tue", "Wed"]
    return small_shop.config, small_shop.root, small_shop.materialized


def test_every_published_row_keeps_suppression_consent_holdouts_and_the_cap(nights):
    from jobs.activation.allocate import buckets, in_share
    from jobs.activation.campaigns_config import CONSENT_FIELD, load_campaigns

    config, _, _ = nights
    settings = load_campaigns()
    targets = query(config, "select * from mart_campaign_targets order by snapshot_date, campaign_id, user_id")
    assert set(pd.to_datetime(targets["snapshot_date"]).dt.date) == set(NIGHTS)
    assert not targets.duplicated(["snapshot_date", "user_id"]).any()  # one campaign per customer and day

    suppressed = query(config, "select user_id, channel, suppressed_at from dim_suppression")
    profile = query(config, "select * from mart_user_profile")
    for night, rows in targets.groupby(pd.to_datetime(targets["snapshot_date"]).dt.date):
        until = pd.Timestamp(window_for(night, config.tz).end)  # the end of the shop's local day
        listed = suppressed[pd.to_datetime(suppressed["suppressed_at"], utc=True) < until]
        on_list = set(zip(listed["user_id"], listed["channel"], strict=True))
        assert not any(
            (u, c) in on_list or (u, "all") in on_list for u, c in zip(rows["user_id"], rows["channel"], strict=True)
        )
        today = profile[pd.to_datetime(profile["snapshot_date"]).dt.date == night].set_index("user_id")
        for channel, mine in rows.groupby("channel"):
            assert today.loc[mine["user_id"], CONSENT_FIELD[channel]].all()
    assert not in_share(buckets(settings.global_holdout.salt, targets["user_id"]), settings.global_holdout.share).any()

    # a customer's group is the campaign's date-free bucket rule on every night, and each
    # campaign's control share is within tolerance
    shares = {c.id: settings.holdout_share(c) for c in settings.campaigns}
    versions = {c.id: c.salt for c in settings.campaigns}
    for campaign_id, rows in targets.groupby("campaign_id"):
        control = in_share(buckets(versions[campaign_id], rows["user_id"]), shares[campaign_id])
        assert (rows["arm"].to_numpy() == np.where(control, "control", "target")).all()
    for campaign_id, rows in targets.drop_duplicates(["campaign_id", "user_id"]).groupby("campaign_id"):
        share, n = shares[campaign_id], len(rows)
        assert abs((rows["arm"] == "control").mean() - share) <= 4 * np.sqrt(share * (1 - share) / n) + 1 / n

    # a campaign reaches a customer at most once within its recontact_days
    contacts = query(config, "select contact_date, campaign_id, user_id from fct_campaign_contacts")
    contacts["contact_date"] = pd.to_datetime(contacts["contact_date"])
    for (campaign_id, _), dates in contacts.groupby(["campaign_id", "user_id"])["contact_date"]:
        gaps = dates.sort_values().diff().dt.days.dropna()
        assert (gaps >= settings.recontact_days(next(c for c in settings.campaigns if c.id == campaign_id))).all()

    # the 7-day cap over the contact history (control is contacted too)
    contacts = query(config, "select contact_date, user_id from fct_campaign_contacts")
    per_user = contacts.groupby("user_id").size()
    assert per_user.max() <= settings.max_contacts_per_7_days and (per_user == settings.max_contacts_per_7_days).any()
    funnel = query(config, "select * from mart_campaign_funnel where snapshot_date = :d", d=NIGHTS[-1])
    assert funnel["capped"].sum() > 0  # customers contacted on both earlier nights are capped on the third


def test_exports_equal_the_target_rows_and_match_their_manifests(nights):
    from jobs.activation.export import export_prefix, exports_storage

    config, _, _ = nights
    storage = exports_storage(config)
    funnel = query(config, "select snapshot_date, campaign_id, target, exported from mart_campaign_funnel")
    targets = query(
        config, "select snapshot_date, campaign_id, user_id from mart_campaign_targets where arm = 'target'"
    )
    assert len(funnel) == 8 + 7 + 7  # the newsletter only on Monday
    for row in funnel.itertuples():
        day = pd.Timestamp(row.snapshot_date).date()
        prefix = export_prefix(row.campaign_id, day)
        manifest = json.loads(storage.read_bytes(prefix + "_manifest.json"))
        for name, entry in manifest["files"].items():
            data = storage.read_bytes(prefix + name)
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        exported = pq.read_table(io.BytesIO(storage.read_bytes(prefix + "targets.parquet"))).to_pandas()
        mine = targets[
            (pd.to_datetime(targets["snapshot_date"]).dt.date == day) & (targets["campaign_id"] == row.campaign_id)
        ]
        assert sorted(exported["user_id"]) == sorted(mine["user_id"])  # every consented target, nobody else
        assert manifest["rows"] == row.exported == row.target == len(exported)


def test_the_answers_reach_the_warehouse(nights):
    config, root, summaries = nights
    truth = pd.read_parquet(root / "truth" / "campaign_responses.parquet")
    contacts = query(config, "select contact_date, campaign_id, user_id, arm from fct_campaign_contacts")
    contacted = contacts[(contacts["arm"] == "target") & (pd.to_datetime(contacts["contact_date"]).dt.date < LAST)]
    assert len(truth) == len(contacted)  # every exported target of the first two nights got the message
    assert summaries[NIGHTS[0]]["campaign_messages"] == 0 and summaries[LAST]["campaign_responses"] > 0
    end = pd.Timestamp(LAST + timedelta(days=1)).tz_localize(SMALL_SHOP.timezone).tz_convert("UTC")
    placed = truth[truth["responded"] & (truth["ordered_at"] < end)]
    orders = query(config, "select order_id, user_id, status from fct_orders where order_id >= 1000000000000000")
    assert len(placed) > 0 and set(placed["order_id"]) == set(orders["order_id"])
    assert set(orders["status"]) <= {"paid", "shipped", "completed"}


def test_the_first_nights_cohort_measured_on_the_third_finds_the_planted_uplift(nights):
    config, root, _ = nights
    truth = pd.read_parquet(root / "truth" / "campaign_responses.parquet")
    results = query(config, "select * from mart_campaign_results where campaign_id = :c", c=BROAD)
    assert set(pd.to_datetime(results["cohort_date"]).dt.date) == {NIGHTS[0]}  # the second's window is open
    assert set(pd.to_datetime(results["measured_on"]).dt.date) == {LAST}
    (row,) = results[results["metric"] == "orders_per_customer"].itertuples()
    mine = truth[(truth["campaign_id"] == BROAD) & (truth["contact_date"] == NIGHTS[0])]
    true = dict(SMALL_SHOP.campaign_uplift)[BROAD] * len(mine) / row.n_target
    assert row.is_valid and row.abs_ci_low <= true <= row.abs_ci_high
    assert row.abs_ci_low > 0 and row.p_value < 0.01  # found, not just covered


def test_no_published_customer_was_free_for_a_higher_priority_campaign(nights):
    """Recomputed from the published profile of each night: a customer allocated to a campaign
    was not in the audience of any higher-priority campaign that night with its channel's
    consent, off the suppression list, outside the global holdout and not reached by that
    campaign within its recontact_days (the cap is global: a customer capped for one campaign
    is capped for all)."""
    from jobs.activation.allocate import (
        _audience,
        _recently_contacted,
        _suppression_list,
        audience_frame,
        buckets,
        in_share,
    )
    from jobs.activation.campaigns_config import CONSENT_FIELD, audience_fields, load_campaigns

    config, _, _ = nights
    settings = load_campaigns()
    kinds = {name: kind for name, (kind, _) in audience_fields().items()}
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    checked = 0
    for night in NIGHTS:
        with engine.connect() as conn:
            frame = audience_frame(config, conn, night).reset_index(drop=True)
            suppressed = _suppression_list(conn, config.warehouse.schema_name, window_for(night, config.tz).end)
            recent = _recently_contacted(conn, config.warehouse.schema_name, night, settings)
        rows = query(config, "select campaign_id, user_id from mart_campaign_targets where snapshot_date = :d", d=night)
        position = pd.Series(np.arange(len(frame)), index=frame["user_id"])
        in_global = in_share(buckets(settings.global_holdout.salt, frame["user_id"]), settings.global_holdout.share)
        active = settings.active(night)
        free = {
            c.id: _audience(frame, c, kinds)
            & frame[CONSENT_FIELD[c.channel]].fillna(False).astype(bool).to_numpy()
            & ~frame["user_id"].isin(suppressed[c.channel]).to_numpy()
            & ~in_global
            & ~frame["user_id"].isin(recent.get(c.id, ())).to_numpy()
            for c in active
        }
        priority = {c.id: c.priority for c in active}
        for campaign_id, users in rows.groupby("campaign_id")["user_id"]:
            at = position[users].to_numpy()
            assert free[campaign_id][at].all(), (night, campaign_id, users[~free[campaign_id][at]].tolist())
            for higher in (c for c in active if c.priority < priority[campaign_id]):
                assert not free[higher.id][at].any(), (night, campaign_id, higher.id)
                checked += len(at)
    assert checked > 0
