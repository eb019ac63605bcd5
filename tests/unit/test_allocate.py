"""Campaign definitions and the allocation rules on hand-made customer frames (no Spark, no
warehouse): holdout buckets, suppression, priority, the 7-day cap and the funnel's counts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from jobs.activation.allocate import FUNNEL_STEPS, allocate, buckets, in_share, reason_codes
from jobs.activation.campaigns_config import DEFAULT_CAMPAIGNS, CampaignsConfig, audience_fields, load_campaigns
from jobs.platform.errors import ConfigError

DAY = date(2026, 6, 1)
KINDS = {name: kind for name, (kind, _) in audience_fields().items()}


def settings(*campaigns: dict, **top) -> CampaignsConfig:
    return CampaignsConfig.model_validate({"campaigns": list(campaigns), **top})


def campaign(id: str, priority: int, audience: dict, channel: str = "email", **more) -> dict:
    return {
        "id": id,
        "name": id,
        "owner": "test",
        "channel": channel,
        "priority": priority,
        "audience": audience,
        **more,
    }


def customers(n: int, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": np.arange(1, n + 1)})
    for channel in ("email", "sms", "push"):
        frame[f"has_{channel}_consent"] = True
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_buckets_are_the_documented_md5_rule_and_any_sql_engine_gets_the_same():
    import duckdb

    users = np.arange(1, 2001)
    ours = buckets("winback:v1", users)
    sql = "select (('0x' || substr(md5('winback:v1:' || u), 1, 8))::ubigint % 10000)::int from range(1, 2001) t(u)"
    duck = np.array([row[0] for row in duckdb.sql(sql + " order by u").fetchall()])
    assert (ours == duck).all()
    assert ours.min() >= 0 and ours.max() < 10_000
    assert (buckets("winback:v1", users) == ours).all()  # stable night after night
    assert (buckets("winback:v2", users) != ours).mean() > 0.99  # a new version re-draws


def test_holdout_share_is_within_tolerance_and_independent_of_the_global_holdout():
    users = np.arange(1, 100_001)
    control = in_share(buckets("c:v1", users), 0.10)
    global_holdout = in_share(buckets("global-holdout:v1", users), 0.05)
    assert abs(control.mean() - 0.10) < 0.003
    assert abs(global_holdout.mean() - 0.05) < 0.0025
    # independent salts: the campaign's split is the same inside and outside the global holdout
    assert abs(control[global_holdout].mean() - control[~global_holdout].mean()) < 0.01


def test_each_step_of_the_funnel_is_counted_and_adds_up():
    n = 20_000
    rng = np.random.default_rng(1)
    frame = customers(n, lifecycle_stage=rng.choice(["at_risk", "loyal"], n), has_email_consent=rng.random(n) > 0.2)
    listed = set(frame["user_id"].sample(500, random_state=2))
    history = pd.Series(2, index=frame["user_id"].sample(1000, random_state=3))
    config = settings(
        campaign("winback", 1, {"lifecycle_stage": {"eq": "at_risk"}}),
        campaign("everyone", 2, {"lifecycle_stage": {"in": ["at_risk", "loyal"]}}, channel="push"),
    )
    chosen, funnel = allocate(frame, config, DAY, KINDS, history, {"email": listed})
    funnel = funnel.set_index("campaign_id")
    for campaign_id, row in funnel.iterrows():
        assert row["eligible"] == sum(row[step] for step in FUNNEL_STEPS[1:])
        assert row["control"] + row["target"] == (chosen["campaign_id"] == campaign_id).sum()
    winback = funnel.loc["winback"]
    at_risk = frame["lifecycle_stage"] == "at_risk"
    assert winback["eligible"] == at_risk.sum()
    assert winback["suppressed_no_consent"] == (at_risk & ~frame["has_email_consent"]).sum()
    assert winback["lost_to_priority"] == 0 and winback["suppressed_list"] > 0
    everyone = funnel.loc["everyone"]
    assert everyone["suppressed_no_consent"] == 0 and everyone["suppressed_list"] == 0  # push: consented, not listed
    # everyone winback allocated (target or control) is lost to priority for the second campaign
    assert everyone["lost_to_priority"] == winback["control"] + winback["target"]


def test_suppression_priority_and_the_cap_hold_on_every_allocated_row():
    n = 5_000
    rng = np.random.default_rng(4)
    frame = customers(n, rfm_group=rng.choice(["Champions", "Lost"], n), has_sms_consent=rng.random(n) > 0.5)
    listed = set(frame["user_id"].sample(300, random_state=5))
    history = pd.Series(rng.integers(0, 4, n), index=frame["user_id"])
    config = settings(
        campaign("vip", 1, {"rfm_group": {"eq": "Champions"}}, channel="sms"),
        campaign("all", 2, {"rfm_group": {"in": ["Champions", "Lost"]}}),
        max_contacts_per_7_days=3,
        global_holdout={"share": 0.05, "salt": "g:v1"},
    )
    chosen, _ = allocate(frame, config, DAY, KINDS, history, {"sms": listed, "email": set()})
    assert chosen["user_id"].is_unique  # one campaign per customer and day
    by_user = frame.set_index("user_id")
    allocated = by_user.loc[chosen["user_id"]]
    assert (history.loc[chosen["user_id"]] < 3).all()  # the cap, control included
    assert not in_share(buckets("g:v1", chosen["user_id"].to_numpy()), 0.05).any()  # global holdout
    vip = chosen["campaign_id"] == "vip"
    assert allocated["has_sms_consent"].to_numpy()[vip.to_numpy()].all()
    assert not chosen.loc[vip, "user_id"].isin(listed).any()
    # a Champion free for vip never goes to the lower-priority campaign
    champions_in_all = allocated["rfm_group"].to_numpy()[(~vip).to_numpy()] == "Champions"
    free_for_vip = (
        by_user.loc[chosen.loc[~vip, "user_id"], "has_sms_consent"].to_numpy()
        & ~chosen.loc[~vip, "user_id"].isin(listed).to_numpy()
    )
    assert not (champions_in_all & free_for_vip).any()
    # the arm is the campaign's own bucket rule
    for campaign_id, rows in chosen.groupby("campaign_id"):
        expected = np.where(
            in_share(buckets(f"{campaign_id}:v1", rows["user_id"].to_numpy()), 0.10), "control", "target"
        )
        assert (rows["arm"].to_numpy() == expected).all()


def test_a_campaign_outside_its_active_dates_allocates_nobody():
    frame = customers(100, rfm_group="Champions")
    config = settings(campaign("later", 1, {"rfm_group": {"eq": "Champions"}}, active_from="2026-07-01"))
    chosen, funnel = allocate(frame, config, DAY, KINDS, pd.Series(dtype=int))
    assert chosen.empty and funnel.empty


def test_a_campaign_recently_sent_to_a_customer_skips_them_and_leaves_them_to_others():
    frame = customers(2_000, lifecycle_stage="at_risk")
    config = settings(
        campaign("winback", 1, {"lifecycle_stage": {"eq": "at_risk"}}, recontact_days=30),
        campaign("newsletter", 2, {"has_email_consent": {"eq": True}}),
        global_holdout={"share": 0.0, "salt": "g:v1"},
    )
    recent = {"winback": set(range(1, 501))}  # reached by win-back in its last 30 days
    chosen, funnel = allocate(frame, config, DAY, KINDS, pd.Series(dtype=int), {}, recent)
    funnel = funnel.set_index("campaign_id")
    assert funnel.loc["winback", "recently_contacted"] == 500
    assert funnel.loc["winback", "eligible"] == sum(funnel.loc["winback", s] for s in FUNNEL_STEPS[1:])
    by_campaign = chosen.groupby("campaign_id")["user_id"].agg(set)
    assert by_campaign["winback"] == set(range(501, 2001))
    assert by_campaign["newsletter"] == set(range(1, 501))  # free again for a lower-priority campaign
    assert [config.recontact_days(c) for c in config.campaigns] == [30, 7]  # its own, else the default


def test_a_weekly_campaign_is_active_on_its_weekdays_only():
    config = settings(campaign("weekly", 1, {"has_email_consent": {"eq": True}}, weekdays=["mon", "thu"]))
    monday = date(2026, 9, 28)
    active = [d.strftime("%a") for d in (monday + timedelta(days=k) for k in range(7)) if config.active(d)]
    assert active == ["Mon", "Thu"]


def test_audience_any_and_reason_codes():
    frame = customers(
        4, rfm_group=["Champions", "Lost", "Lost", "Champions"], tag_spending_power=["low", "premium", "low", None]
    )
    config = settings(
        campaign(
            "vip", 1, {}, audience_any=[{"rfm_group": {"eq": "Champions"}}, {"tag_spending_power": {"eq": "premium"}}]
        )
    )
    chosen, _ = allocate(frame.assign(**{"has_email_consent": True}), config, DAY, KINDS, pd.Series(dtype=int))
    assert sorted(chosen["user_id"]) == [1, 2, 4]
    codes = reason_codes(frame, config.campaigns[0], KINDS)
    assert codes.tolist()[:2] == ["rfm_group=Champions", "tag_spending_power=premium"]


def _write(tmp_path, mutate) -> str:
    raw = yaml.safe_load(DEFAULT_CAMPAIGNS.read_text())
    mutate(raw)
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda r: r["campaigns"][1]["audience"].update({"spend": {"gt": 1}}),
            "campaigns.1(winback_high_value).audience': unknown field 'spend'",
        ),
        (
            lambda r: r["campaigns"][1]["audience"].update({"lifecycle_stage": {"in": ["sleeping"]}}),
            "unknown value 'sleeping'",
        ),
        (
            lambda r: r["campaigns"][2]["audience_any"][0].update({"rfm_group": {"eq": "Champs"}}),
            "campaigns.2(vip_early_access).audience_any.0': rfm_group: unknown value 'Champs'",
        ),
        (
            lambda r: r["campaigns"][2]["audience_any"][1].update({"tag_spending_power": {"eq": "rich"}}),
            "unknown value 'rich'",
        ),
        (
            lambda r: r["campaigns"][0].update({"products": ["cart", "wishlist"]}),
            "campaigns.0(cart_abandonment).products.1",
        ),
        (
            lambda r: r["campaigns"][3].update({"id": "winback_high_value"}),
            "campaign ids must be unique: winback_high_value",
        ),
        (lambda r: r["campaigns"][3].update({"priority": 2}), "campaign priorities must be unique: 2"),
        (
            lambda r: r["campaigns"][1].update({"score": "lifecycle_stage"}),
            "winback_high_value).score': 'lifecycle_stage' is not a numeric",
        ),
        (lambda r: r["campaigns"][1].update({"channel": "fax"}), "campaigns.1(winback_high_value).channel"),
        (lambda r: r["campaigns"][1].update({"holdout_share": 0.9}), "campaigns.1(winback_high_value).holdout_share"),
    ],
)
def test_a_bad_campaign_definition_is_one_line_naming_the_campaign_and_key(tmp_path, mutate, expected):
    with pytest.raises(ConfigError) as caught:
        load_campaigns(_write(tmp_path, mutate))
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_the_shipped_campaigns_load_and_cover_the_issue():
    config = load_campaigns()
    assert {c.id for c in config.campaigns} >= {
        "winback_high_value", "onboarding_new", "cart_abandonment", "vip_early_access", "cross_sell",
        "reactivation_churn_risk", "repurchase_reminder",
    }  # fmt: skip


def test_product_slots_are_topped_up_with_recent_best_sellers_and_never_left_empty():
    from jobs.activation.allocate import attach_products

    config = settings(
        campaign("recs", 1, {"frequency": {"gte": 1}}, products=["recommendations"]),
        campaign("news", 2, {"frequency": {"gte": 1}}),  # no product slots at all
    )
    recs, news = config.campaigns
    sources = {
        "recommendations": pd.Series({1: [10, 11, 12, 13], 2: [10]}),  # 3: no list (first night, cold)
        "popular": [10, 20, 21, 22],
    }
    users = pd.Series([1, 2, 3])
    got = attach_products(users, recs, sources).astype(object).values.tolist()
    assert got == [[10, 11, 12], [10, 20, 21], [10, 20, 21]]  # distinct, the campaign's own first
    assert attach_products(users, news, sources).isna().all().all()
    assert attach_products(users, recs, {"recommendations": sources["recommendations"]}).iloc[2].isna().all()


def test_a_campaign_reaches_at_most_its_audience_share_best_scores_first_and_the_rest_is_capped():
    n = 1_000
    frame = customers(n, predicted_value_12m=np.arange(n, dtype=float), frequency=1)
    config = settings(
        campaign("winback", 1, {"frequency": {"gte": 1}}, score="predicted_value_12m", max_audience_share=0.05),
        campaign("news", 2, {"frequency": {"gte": 1}}),
        defaults={"max_audience_share": 0.3},
        global_holdout={"share": 0.0},
    )
    chosen, funnel = allocate(frame, config, DAY, KINDS, pd.Series(dtype=int))
    funnel = funnel.set_index("campaign_id")
    winback = chosen[chosen["campaign_id"] == "winback"]
    assert len(winback) == 50 and funnel.loc["winback", "capped"] == 950
    assert set(winback["user_id"]) == set(range(951, 1001))  # the highest predicted values
    news = chosen[chosen["campaign_id"] == "news"]
    assert len(news) == 300 and funnel.loc["news", "capped"] == 650  # 1000 - 50 taken - 300 allocated
    again, _ = allocate(frame, config, DAY, KINDS, pd.Series(dtype=int))
    assert set(again.loc[again["campaign_id"] == "news", "user_id"]) == set(news["user_id"])  # a fixed draw


def test_an_audience_far_above_its_recent_nights_is_reported():
    import sqlalchemy as sa

    from jobs.activation.allocate import audience_jumps

    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.text("create table mart_campaign_funnel (snapshot_date date, campaign_id text, "
                             "control int, target int)"))  # fmt: skip
        for back in range(1, 8):
            for campaign_id, audience in (("winback", 100), ("news", 1000)):
                conn.execute(
                    sa.text("insert into mart_campaign_funnel values (:d, :c, :a / 10, :a - :a / 10)"),
                    {"d": DAY - timedelta(days=back), "c": campaign_id, "a": audience},
                )
        tonight = pd.DataFrame({"campaign_id": ["winback", "news", "new"], "control": [40, 90, 5],
                                "target": [360, 910, 45]})  # fmt: skip
        jumps = audience_jumps(conn, "main", DAY, tonight)
    assert [(j["campaign_id"], j["audience"], j["median_before"]) for j in jumps] == [("winback", 400, 100.0)]
    assert "4.0x" in jumps[0]["message"]
