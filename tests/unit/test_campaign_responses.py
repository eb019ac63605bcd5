"""The simulator answers the campaigns (jobs/simulator/responses.py), and the measurement finds
what it planted.

Customers of real exports (files and manifest written by the export stage's own writer) answer
at their campaign's true uplift, after the contact date, only when contacted, the same way
every time; a tampered export is refused. Over several simulated shops, each with every
campaign on several contact dates split by the allocation's own bucket rule, the measured lift
in orders per customer covers the true uplift about 95% of the time and campaigns without
effect are significant about 5% of the time; the A/A splits pass the sample-ratio check, broken
splits fail it, and the control share stays within its tolerance.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from jobs.activation import stats
from jobs.activation.allocate import buckets, in_share
from jobs.activation.campaigns_config import CampaignsConfig
from jobs.activation.export import export_prefix, write_export
from jobs.activation.measure import cohort_results, per_customer
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.storage import LocalStorage
from jobs.simulator import SimulationSpec, generate, materialize
from jobs.simulator.responses import RESPONSE_DAYS, RESPONSE_ORDER_ID_BASE, sent_messages, with_responses

SPEC = SimulationSpec(seed=7, days=30, users=1500, products=120)
CONTACT = SPEC.start_date + timedelta(days=20)
SETTINGS = CampaignsConfig(campaigns=())
HOLDOUT = 0.10


def export(storage, campaign: str, day: date, users, products=None, channel: str = "email") -> dict:
    """One campaign's export of ``day`` holding ``users``, written by the export stage's writer."""
    n = len(users)
    frame = pd.DataFrame(
        {
            "campaign_id": campaign,
            "send_date": day.isoformat(),
            "user_id": np.asarray(users, dtype=np.int64),
            "email": [f"user{u}@example.com" for u in users],
            "product_id_1": pd.array(products if products is not None else [None] * n, dtype="Int64"),
            "product_id_2": pd.array([None] * n, dtype="Int64"),
            "product_id_3": pd.array([None] * n, dtype="Int64"),
            "reason_code": "test",
        }
    )
    return write_export(storage, campaign, day, channel, frame, {}, {"code_version": "test"})


def split(campaign: str, version: int, users: np.ndarray, share: float = HOLDOUT) -> np.ndarray:
    """The allocation's rule: True for the control group."""
    return in_share(buckets(f"{campaign}:v{version}", users), share)


def purchases(world) -> pd.DataFrame:
    """Orders as the cleaned warehouse holds them: clean, purchased, local order date."""
    orders = world.orders[world.orders["dirt_reason"].isna() & world.orders["final_status"].isin(PURCHASE_STATUSES)]
    return pd.DataFrame(
        {
            "user_id": orders["user_id"].astype(np.int64),
            "order_date": orders["created_at"].dt.tz_convert(world.spec.timezone).dt.date,
            "total_amount": orders["true_total_amount"],
        }
    )


@pytest.fixture(scope="module")
def world():
    return generate(SPEC)


def test_contacted_customers_answer_at_the_true_uplift_and_nobody_else(world, tmp_path):
    storage = LocalStorage(tmp_path)
    uplift = dict(SPEC.campaign_uplift)
    users = world.users["user_id"].to_numpy()
    contacted = users[~split("cart_abandonment", 1, users)]
    product = int(world.products["product_id"].iloc[5])
    export(storage, "cart_abandonment", CONTACT, contacted, products=[product] * len(contacted), channel="push")
    export(storage, "cross_sell", CONTACT, contacted[:300])  # no effect
    export(storage, "not_in_the_spec", CONTACT, contacted[:300])
    answered = with_responses(world, storage, CONTACT + timedelta(days=1))
    truth = answered.truth["campaign_responses"]
    assert len(truth) == len(contacted) + 600
    assert set(truth["user_id"]) == set(contacted)  # only contacted customers; control gets nothing

    cart = truth[truth["campaign_id"] == "cart_abandonment"]
    p, n = uplift["cart_abandonment"], len(cart)
    assert abs(cart["responded"].mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert (cart["true_uplift"] == p).all()
    assert not truth.loc[truth["campaign_id"] != "cart_abandonment", "responded"].any()

    new = answered.orders[~answered.orders["order_id"].isin(world.orders["order_id"])]
    assert len(new) == cart["responded"].sum() == len(answered.orders) - len(world.orders)
    assert set(new["order_id"]) == set(cart.loc[cart["responded"], "order_id"])
    assert (new["order_id"] >= RESPONSE_ORDER_ID_BASE).all() and new["order_id"].is_unique
    local = new["created_at"].dt.tz_convert(SPEC.timezone).dt.date
    assert local.between(CONTACT + timedelta(days=1), CONTACT + timedelta(days=RESPONSE_DAYS)).all()
    assert (new["final_status"] == "completed").all() and (new["channel"] == "app").all()
    items = answered.order_items[answered.order_items["order_id"].isin(new["order_id"])]
    assert (items["product_id"] == product).all() and (items["quantity"] == 1).all()
    assert np.allclose(new.set_index("order_id")["total_amount"], items.set_index("order_id")["unit_price"])
    history = answered.order_status_history
    steps = history[history["order_id"].isin(new["order_id"])].groupby("order_id")["status"].agg(list)
    assert (steps.map(tuple) == ("created", "paid", "shipped", "completed")).all()


def test_answers_do_not_change_when_later_exports_arrive_or_on_a_rerun(world, tmp_path):
    storage = LocalStorage(tmp_path)
    users = world.users["user_id"].to_numpy()[:800]
    export(storage, "winback_high_value", CONTACT, users)
    first = with_responses(world, storage, CONTACT + timedelta(days=1)).truth["campaign_responses"]
    export(storage, "winback_high_value", CONTACT + timedelta(days=1), users)  # the next night
    export(storage, "onboarding_new", CONTACT - timedelta(days=1), users[:100])  # an earlier date
    later = with_responses(world, storage, CONTACT + timedelta(days=5)).truth["campaign_responses"]
    assert len(later) == len(first) + 900
    same = later[(later["campaign_id"] == "winback_high_value") & (later["contact_date"] == CONTACT)]
    pd.testing.assert_frame_equal(same.reset_index(drop=True), first.reset_index(drop=True))
    # an export of the as-of date itself is not sent yet: its messages go out the next morning
    assert with_responses(world, storage, CONTACT).truth["campaign_responses"]["contact_date"].lt(CONTACT).all()


def test_an_export_that_does_not_match_its_manifest_is_refused(world, tmp_path):
    storage = LocalStorage(tmp_path)
    users = world.users["user_id"].to_numpy()[:200]
    export(storage, "cart_abandonment", CONTACT, users)
    export(storage, "winback_high_value", CONTACT, users)
    prefix = export_prefix("cart_abandonment", CONTACT)
    table = pq.read_table(io.BytesIO(storage.read_bytes(prefix + "targets.parquet"))).slice(0, 50)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(prefix + "targets.parquet", buffer.getvalue())  # truncated after its manifest
    sent, refused = sent_messages(storage, CONTACT + timedelta(days=1))
    assert refused == [prefix + "_manifest.json"]
    assert set(sent["campaign_id"]) == {"winback_high_value"} and len(sent) == 200
    manifest = json.loads(storage.read_bytes(export_prefix("winback_high_value", CONTACT) + "_manifest.json"))
    assert manifest["rows"] == 200 and set(manifest["files"]) == {"targets.csv", "targets.parquet"}


def test_materialising_with_answers_is_incremental_and_reaches_the_source_database(world, tmp_path):
    exports = LocalStorage(tmp_path / "exports")
    users = world.users["user_id"].to_numpy()
    export(exports, "cart_abandonment", CONTACT, users[~split("cart_abandonment", 1, users)])
    last = CONTACT + timedelta(days=2)

    def source_orders(root, days):
        for day in days:
            summary = materialize(
                world, LocalStorage(root / "landing"), f"sqlite:///{root}/shop.db", day, root / "truth", exports
            )
        engine = sa.create_engine(f"sqlite:///{root}/shop.db")
        with engine.connect() as conn:
            frame = pd.read_sql("select * from orders order by order_id", conn)
        engine.dispose()
        return frame, summary

    stepwise, summary = source_orders(tmp_path / "stepwise", [CONTACT, CONTACT + timedelta(days=1), last])
    direct, _ = source_orders(tmp_path / "direct", [last])
    pd.testing.assert_frame_equal(stepwise, direct)
    truth = pd.read_parquet(tmp_path / "direct" / "truth" / "campaign_responses.parquet")
    answered = truth[truth["responded"]]
    assert summary["campaign_responses"] == len(answered) > 0
    assert set(answered["order_id"]) <= set(direct["order_id"])  # placed by the end of `last`
    assert summary["exports_refused"] == []


def test_measured_lift_covers_the_true_uplift_and_zero_effects_are_significant_at_the_nominal_rate(tmp_path):
    """6 shops x 3 contact dates x 7 campaigns, each split by the allocation's bucket rule (a
    new version per cohort) with the configured 10% holdout; everyone in the target group is
    exported, so the true effect on orders per customer is the campaign's uplift."""
    window, seeds, offsets = 7, range(6), (10, 17, 24)
    uplift = dict(SimulationSpec().campaign_uplift)
    assert {p > 0 for p in uplift.values()} == {True, False}  # some campaigns work, some do not
    rows = []
    for seed in seeds:
        spec = SimulationSpec(seed=seed, days=40, users=2500, products=150)
        world = generate(spec)
        storage = LocalStorage(tmp_path / f"exports-{seed}")
        cohorts = []
        for offset in offsets:
            day = spec.start_date + timedelta(days=offset)
            signed_up = world.users.loc[world.users["signup_at"].dt.tz_convert(spec.timezone).dt.date <= day, "user_id"]
            members = signed_up.to_numpy(np.int64)
            for campaign in uplift:
                control = split(campaign, offset, members)
                export(storage, campaign, day, members[~control])
                cohorts.append(
                    (campaign, day, pd.DataFrame({"user_id": members, "arm": np.where(control, "control", "target")}))
                )
        orders = purchases(with_responses(world, storage, spec.start_date + timedelta(days=spec.days)))
        for campaign, day, members in cohorts:
            frame = per_customer(members, orders, day, window, SETTINGS.measurement.pre_period_days)
            (row,) = [r for r in cohort_results(frame, HOLDOUT, SETTINGS) if r["metric"] == "orders_per_customer"]
            rows.append({"campaign": campaign, "truth": uplift[campaign], **row})
    results = pd.DataFrame(rows)
    assert len(results) == len(seeds) * len(offsets) * len(uplift)

    effect = results[results["truth"] > 0]
    covered = (effect["abs_ci_low"] <= effect["truth"]) & (effect["truth"] <= effect["abs_ci_high"])
    # 90 intervals at 95%: 4.5 misses expected, 12 or more has probability < 0.3%
    assert (~covered).sum() <= 11, effect[~covered]
    null = results[results["truth"] == 0]
    # 36 null cohorts at alpha 5%: 1.8 false positives expected, 7 or more has probability < 0.3%
    assert (null["p_value"] < 0.05).sum() <= 6, null[null["p_value"] < 0.05]
    assert (effect["p_value"] < 0.05).mean() > 0.3  # and the real effects are found, not just covered

    # A/A: the bucket split passes the sample-ratio check (at p < 0.001, ~0.1 of 126 flag by chance)
    assert results["is_srm_mismatch"].sum() <= 1 and results["is_valid"].mean() > 0.99
    share = results["n_control"] / (results["n_control"] + results["n_target"])
    n = results["n_control"] + results["n_target"]
    assert (abs(share - HOLDOUT) < 4 * np.sqrt(HOLDOUT * (1 - HOLDOUT) / n)).all()


def test_broken_splits_fail_the_sample_ratio_check():
    users = np.arange(1, 3001)
    control = split("vip_early_access", 1, users)
    n_control, n_target = int(control.sum()), int((~control).sum())
    assert not stats.srm_check(n_target, n_control, HOLDOUT)[1]  # the real split
    # a bug that loses half of the control rows (say, a join on a table they are missing from)
    assert stats.srm_check(n_target, n_control // 2, HOLDOUT)[1]
    # the split drawn with 20% while the campaign says 10%
    wrong = split("vip_early_access", 1, users, share=0.2)
    assert stats.srm_check(int((~wrong).sum()), int(wrong.sum()), HOLDOUT)[1]
    # and a flagged cohort's lift is published as invalid
    frame = pd.DataFrame(
        {
            "user_id": users,
            "arm": np.where(wrong, "control", "target"),
            "orders": (users % 7 == 0).astype(int),
            "revenue": (users % 7 == 0) * 100.0,
            "pre_revenue": (users % 5 == 0) * 50.0,
        }
    )
    rows = cohort_results(frame, HOLDOUT, SETTINGS)
    assert rows and all(r["is_srm_mismatch"] and not r["is_valid"] for r in rows)
