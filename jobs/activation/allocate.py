"""Nightly campaign allocation: who gets which campaign on date D, and who is held out.

For each campaign active on D, highest priority first, every step counted in
``mart_campaign_funnel``:

1. **eligible**: the audience rule over the date's customer profile and derived fields
   (:func:`audience_frame`);
2. **suppressed**, first reason wins: no consent for the channel; on the shop's suppression
   list for the channel (``dim_suppression``); in the **global holdout** (a fixed share of all
   customers, by its own salt, that no campaign reaches);
   **recently contacted**: the campaign reached them (either group) in its last
   ``recontact_days`` (a win-back goes out once a month, not every night);
3. **allocated**: at most one campaign per customer and day (a customer already allocated to a
   higher-priority campaign is ``lost_to_priority``) and at most ``max_contacts_per_7_days``
   contacts in any 7 days, read from the contact history (``capped``);
4. **holdout**: ``bucket = int(md5('<id>:v<version>:<user_id>')[:8], 16) mod 10000``; control
   when ``bucket < holdout_share x 10000``. The same customer stays in the same group night after
   night, and any SQL engine can recompute it. Control customers count as contacted (for the
   cap and the priority), so no lower-priority campaign reaches them either.

Published in one transaction: ``mart_campaign_targets`` (both groups, with up to three products
and the score used), ``mart_campaign_funnel`` and the date's rows of ``fct_campaign_contacts``.
Re-running D replaces D's rows; earlier dates' contacts are never rewritten.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from jobs.activation.campaigns_config import CONSENT_FIELD, Campaign, CampaignsConfig, audience_fields, load_campaigns
from jobs.platform.conditions import mask
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import UpstreamNotReadyError
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.lake import window_for
from jobs.platform.ops import warehouse_engine
from jobs.platform.publish import Output, publish, snapshot
from jobs.platform.warehouse import frame_to_arrow, query_frame

log = logging.getLogger(__name__)
BUCKETS = 10_000
MAX_PRODUCTS = 3
# A message with product slots never goes out with an empty one: after the campaign's own
# sources, slots are filled with the season's best sellers (orders of the last POPULAR_DAYS).
POPULAR_DAYS = 30
FUNNEL_STEPS = (
    "eligible",
    "suppressed_no_consent",
    "suppressed_list",
    "suppressed_global_holdout",
    "recently_contacted",
    "lost_to_priority",
    "capped",
    "control",
    "target",
)


def buckets(salt: str, user_ids: np.ndarray | pd.Series) -> np.ndarray:
    """``int(first 8 hex digits of md5(salt ':' user_id), 16) mod 10000`` per user: the same in
    DuckDB, PostgreSQL and Spark (``md5`` of the same text)."""
    return np.fromiter(
        (int(hashlib.md5(f"{salt}:{int(u)}".encode()).hexdigest()[:8], 16) % BUCKETS for u in user_ids),
        dtype=np.int64,
        count=len(user_ids),
    )


def in_share(bucket: np.ndarray, share: float) -> np.ndarray:
    return bucket < round(share * BUCKETS)


def _over_cap(frame: pd.DataFrame, allocated: np.ndarray, campaign: Campaign, cap: int) -> np.ndarray:
    """The allocated customers beyond the campaign's audience cap: the lowest by its score, or
    (without a score) by a fixed draw from its salt, so the same customers stay in night by night."""
    over = np.zeros(len(frame), dtype=bool)
    chosen = np.flatnonzero(allocated)
    if len(chosen) <= cap:
        return over
    users = frame["user_id"].to_numpy()[chosen]
    draw = buckets(f"{campaign.salt}:cap", users)
    if campaign.score:
        score = pd.to_numeric(frame[campaign.score].iloc[chosen], errors="coerce").fillna(-np.inf).to_numpy()
        order = np.lexsort((draw, -score))
    else:
        order = np.argsort(draw, kind="stable")
    over[chosen[order[cap:]]] = True
    return over


def allocate(
    frame: pd.DataFrame,
    settings: CampaignsConfig,
    day: date,
    kinds: dict[str, str],
    contacts_last_6_days: pd.Series,
    suppressed: dict[str, set[int]] | None = None,
    recently_contacted: dict[str, set[int]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Allocate the campaigns active on ``day`` over ``frame`` (one row per customer, the
    audience fields and ``user_id``). ``contacts_last_6_days``: contacts per user in D-6..D-1;
    ``suppressed``: user ids on the suppression list per channel; ``recently_contacted``: per
    campaign, the user ids it reached within its ``recontact_days`` before D. Returns
    ``(assignments, funnel)``: one row per allocated customer (campaign_id, user_id, arm,
    bucket) and one row per campaign with the counts of :data:`FUNNEL_STEPS`."""
    suppressed, recently_contacted = suppressed or {}, recently_contacted or {}
    frame = frame.reset_index(drop=True)
    users = frame["user_id"].to_numpy()
    in_global = in_share(buckets(settings.global_holdout.salt, users), settings.global_holdout.share)
    recent = frame["user_id"].map(contacts_last_6_days).fillna(0).to_numpy()
    at_cap = recent >= settings.max_contacts_per_7_days
    taken = np.zeros(len(frame), dtype=bool)
    assignments, funnel = [], []
    for campaign in settings.active(day):
        eligible = _audience(frame, campaign, kinds)
        no_consent = eligible & ~frame[CONSENT_FIELD[campaign.channel]].fillna(False).astype(bool).to_numpy()
        remaining = eligible & ~no_consent
        listed = remaining & np.isin(users, list(suppressed.get(campaign.channel, ())))
        remaining &= ~listed
        global_holdout = remaining & in_global
        remaining &= ~global_holdout
        recent = remaining & np.isin(users, list(recently_contacted.get(campaign.id, ())))
        remaining &= ~recent
        lost = remaining & taken
        remaining &= ~taken
        capped = remaining & at_cap
        allocated = remaining & ~capped
        over = _over_cap(frame, allocated, campaign, settings.audience_cap(campaign, len(frame)))
        allocated &= ~over
        capped |= over
        taken |= allocated
        bucket = buckets(campaign.salt, users[allocated])
        control = in_share(bucket, settings.holdout_share(campaign))
        assignments.append(
            pd.DataFrame(
                {
                    "campaign_id": campaign.id,
                    "user_id": users[allocated],
                    "arm": np.where(control, "control", "target"),
                    "bucket": bucket,
                    "row": np.flatnonzero(allocated),
                }
            )
        )
        counts = dict(
            zip(
                FUNNEL_STEPS,
                (eligible, no_consent, listed, global_holdout, recent, lost, capped),
                strict=False,
            )
        )
        funnel.append(
            {
                "campaign_id": campaign.id,
                "campaign_version": campaign.version,
                "channel": campaign.channel,
                "priority": campaign.priority,
                "holdout_share": settings.holdout_share(campaign),
                **{step: int(values.sum()) for step, values in counts.items()},
                "control": int(control.sum()),
                "target": int((~control).sum()),
            }
        )
    columns = ["campaign_id", "user_id", "arm", "bucket", "row"]
    frames = [a for a in assignments if len(a)]
    chosen = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return chosen, pd.DataFrame(funnel, columns=["campaign_id", "campaign_version", "channel", "priority",
                                                  "holdout_share", *FUNNEL_STEPS])  # fmt: skip


def _audience(frame: pd.DataFrame, campaign: Campaign, kinds: dict[str, str]) -> np.ndarray:
    eligible = mask(frame, campaign.audience, kinds)
    if campaign.audience_any:
        any_of = pd.Series(False, index=frame.index)
        for condition in campaign.audience_any:
            any_of |= mask(frame, condition, kinds)
        eligible &= any_of
    return eligible.to_numpy()


def reason_codes(frame: pd.DataFrame, campaign: Campaign, kinds: dict[str, str]) -> pd.Series:
    """Why each row is in the audience: ``field=value`` of the categorical fields the audience
    names (for ``audience_any``, those of the first alternative that holds); numeric fields are
    left to the score."""

    def codes(condition: dict) -> pd.Series:
        fields = [f for f in condition if kinds[f] != "number"]
        if not fields:
            return pd.Series(campaign.id, index=frame.index)
        parts = [f + "=" + frame[f].astype(str) for f in fields]
        return pd.concat(parts, axis=1).agg(";".join, axis=1) if len(parts) > 1 else parts[0]

    result = codes(campaign.audience) if campaign.audience else pd.Series(campaign.id, index=frame.index)
    if campaign.audience_any:
        chosen = pd.Series(None, index=frame.index, dtype=object)
        for condition in campaign.audience_any:
            hit = mask(frame, condition, kinds) & chosen.isna()
            chosen[hit] = codes(condition)[hit]
        joined = result + ";" + chosen.fillna("")
        result = joined if campaign.audience else chosen.fillna(campaign.id)
    return result.str.strip(";")


def audience_frame(config: PipelineConfig, conn: sa.Connection, day: date) -> pd.DataFrame:
    """One row per registered customer on ``day``: the profile, lifecycle dates and the derived
    audience fields (``campaigns_config.DERIVED_FIELDS``), plus ``cart_products`` (today's carted
    products, latest first)."""
    schema = config.warehouse.schema_name
    frame = query_frame(
        conn,
        f"select p.*, l.first_order_date, l.days_since_last_order from {schema}.mart_user_profile p "
        f"left join {schema}.mart_user_lifecycle l on l.snapshot_date = p.snapshot_date and l.user_id = p.user_id "
        "where p.snapshot_date = :d",
        d=day,
    )
    if frame.empty:
        raise UpstreamNotReadyError(f"no customer profile for {day}: run the customers stages (segments, scores, tags)")
    first = pd.to_datetime(frame["first_order_date"])
    expected = pd.to_datetime(frame["expected_next_order_date"])
    today = pd.Timestamp(day)
    frame["days_since_first_order"] = (today - first).dt.days
    frame["days_until_expected_order"] = (expected - today).dt.days
    carts = _abandoned_carts(config, conn, day)
    frame = frame.merge(carts, on="user_id", how="left")
    frame["abandoned_cart"] = frame["abandoned_cart"].eq(True)  # missing: no cart
    frame["cart_products"] = frame["cart_products"].apply(lambda v: v if isinstance(v, list) else [])
    return frame


def _abandoned_carts(config: PipelineConfig, conn: sa.Connection, day: date) -> pd.DataFrame:
    """Customers who carted on ``day`` and ordered nothing after their last cart by the end of
    ``day``, with the products they carted (latest first). Events are read in Spark; only
    per-customer results come back."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.platform.published import published_batches, published_events

    schema = config.warehouse.schema_name
    events = published_events(config, published_batches(conn, schema), day, 1)
    carts = events.where(F.col("event_type") == "add_to_cart").where(F.col("product_id").isNotNull())
    latest = Window.partitionBy("user_id", "product_id").orderBy(F.col("event_at").desc())
    per_product = carts.withColumn("n", F.row_number().over(latest)).where(F.col("n") == 1)
    per_user = (
        per_product.groupBy("user_id")
        .agg(
            F.max("event_at").alias("last_cart_at"),
            F.sort_array(F.collect_list(F.struct(F.col("event_at"), F.col("product_id"))), asc=False).alias("carted"),
        )
        .select("user_id", "last_cart_at", F.col("carted.product_id").alias("cart_products"))
        .toPandas()
    )
    columns = ["user_id", "abandoned_cart", "cart_products"]
    if per_user.empty:
        return pd.DataFrame(columns=columns)
    # orders up to the end of the day only: re-running D after later nights gives the same lists
    orders = query_frame(
        conn,
        f"select user_id, max(created_at) as last_order_at from {schema}.fct_orders "
        "where created_at >= :since and created_at < :until group by user_id",
        since=datetime.combine(day - timedelta(days=2), datetime.min.time(), tzinfo=timezone.utc),
        until=window_for(day, config.tz).end,
    )
    merged = per_user.merge(orders, on="user_id", how="left")
    last_cart = pd.to_datetime(merged["last_cart_at"], utc=True)
    last_order = pd.to_datetime(merged["last_order_at"], utc=True)
    merged["abandoned_cart"] = last_order.isna() | (last_order < last_cart)
    merged["cart_products"] = merged["cart_products"].apply(lambda items: [int(i) for i in items])
    return merged[columns]


def _latest_on_or_before(conn: sa.Connection, schema: str, table: str, day: date) -> date | None:
    return conn.execute(
        sa.text(f"select max(snapshot_date) from {schema}.{table} where snapshot_date <= :d"), {"d": day}
    ).scalar()


def _last_purchase(conn: sa.Connection, schema: str, day: date) -> pd.DataFrame:
    """The products of every customer's latest purchase up to ``day``."""
    query = sa.text(
        f"""with ranked as (
            select o.user_id, i.product_id, dense_rank() over (
                partition by o.user_id order by o.created_at desc, o.order_id desc) as n_order
            from {schema}.fct_orders o join {schema}.fct_order_items i on i.order_id = o.order_id
            where o.status in :statuses and o.order_date <= :d and o.user_id is not null
              and coalesce(o.order_type, 'sale') = 'sale'
        )
        select user_id, product_id from ranked where n_order = 1"""
    ).bindparams(sa.bindparam("statuses", expanding=True))
    return query_frame(conn, query, statuses=list(PURCHASE_STATUSES), d=day)


def product_sources(conn: sa.Connection, schema: str, day: date, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Per source (``cart``, ``recommendations``, ``associations``, ``similar``): a list of
    active merchandise product ids per customer, best first."""
    goods = f"select product_id from {schema}.dim_product where is_active and coalesce(is_merchandise, true)"
    active = set(query_frame(conn, goods)["product_id"])  # never shipping, fees or adjustments
    keep = lambda items: [int(p) for p in items if int(p) in active]  # noqa: E731
    sources = {"cart": frame.set_index("user_id")["cart_products"].map(keep)}

    recs_day = _latest_on_or_before(conn, schema, "mart_recommendations", day)
    recs = query_frame(
        conn,
        f"select user_id, product_id from {schema}.mart_recommendations where snapshot_date = :d and rank <= :n "
        "order by user_id, rank",
        d=recs_day,
        n=2 * MAX_PRODUCTS,
    )
    sources["recommendations"] = recs.groupby("user_id")["product_id"].agg(list).map(keep)

    last_bought = _last_purchase(conn, schema, day)
    rules_day = _latest_on_or_before(conn, schema, "mart_product_associations", day)
    rules = query_frame(
        conn,
        "select antecedent_product_ids as antecedent, consequent_product_id, "
        "coalesce(leverage, support * (1 - 1 / lift)) as strength "  # rules published before leverage
        f"from {schema}.mart_product_associations where snapshot_date = :d and antecedent_size = 1 "
        "order by strength desc, lift desc, consequent_product_id",
        d=rules_day,
    )
    rules["antecedent"] = rules["antecedent"].astype("int64") if len(rules) else rules["antecedent"]
    cross = last_bought.merge(rules, left_on="product_id", right_on="antecedent").sort_values(
        ["user_id", "strength"], ascending=[True, False], kind="stable"
    )
    sources["associations"] = cross.groupby("user_id")["consequent_product_id"].agg(list).map(keep)

    similar_day = _latest_on_or_before(conn, schema, "mart_similar_items", day)
    similar = query_frame(
        conn,
        f"select product_id, similar_product_id from {schema}.mart_similar_items where snapshot_date = :d "
        "order by product_id, rank",
        d=similar_day,
    )
    similar_to = similar.groupby("product_id")["similar_product_id"].agg(list)
    seed = frame.set_index("user_id")["cart_products"].map(lambda items: items[0] if items else None)
    seed = seed.fillna(last_bought.drop_duplicates("user_id").set_index("user_id")["product_id"])
    sources["similar"] = seed.dropna().astype("int64").map(similar_to).dropna().map(keep)
    sources["popular"] = keep(recent_best_sellers(conn, schema, day))
    return sources


def recent_best_sellers(conn: sa.Connection, schema: str, day: date, n: int = 50) -> list[int]:
    """Products on the most purchases (guests' included) placed in the :data:`POPULAR_DAYS`
    up to ``day``, most first: recent, so a Christmas item is not a fallback in spring."""
    query = sa.text(
        f"""select i.product_id, count(distinct i.order_id) as orders
            from {schema}.fct_order_items i join {schema}.fct_orders o on o.order_id = i.order_id
            where o.order_date > :first and o.order_date <= :d and o.status in :statuses
              and coalesce(o.order_type, 'sale') = 'sale' and i.quantity > 0
            group by i.product_id
            order by orders desc, i.product_id
            limit :n"""
    ).bindparams(sa.bindparam("statuses", expanding=True))
    frame = query_frame(conn, query, statuses=list(PURCHASE_STATUSES), first=day - timedelta(days=POPULAR_DAYS),
                        d=day, n=n)  # fmt: skip
    return [int(p) for p in frame["product_id"]]


def attach_products(user_ids: pd.Series, campaign: Campaign, sources: dict[str, pd.Series]) -> pd.DataFrame:
    """Up to :data:`MAX_PRODUCTS` distinct products per customer from the campaign's sources,
    in the campaign's order, then from the recent best sellers (``sources["popular"]``, one list
    for everyone) for a campaign with product slots: on a first night without a model, or for a
    customer no source knows, the slots are still full. Columns ``product_id_1..3`` (null only
    where even the best sellers run out, or for a campaign without products)."""
    picked = [[] for _ in range(len(user_ids))]
    fallback = ["popular"] if campaign.products and "popular" in sources else []
    for source in [*campaign.products, *fallback]:
        if source == "popular":
            lists = [sources["popular"]] * len(user_ids)
        else:
            lists = user_ids.map(sources[source]).tolist()
        for chosen, items in zip(picked, lists, strict=True):
            if not isinstance(items, list):
                continue
            for item in items:
                if len(chosen) == MAX_PRODUCTS:
                    break
                if item not in chosen:
                    chosen.append(item)
    columns = {}
    for n in range(MAX_PRODUCTS):
        columns[f"product_id_{n + 1}"] = pd.array([p[n] if len(p) > n else None for p in picked], dtype="Int64")
    return pd.DataFrame(columns)


def _suppression_list(conn: sa.Connection, schema: str, until: datetime) -> dict[str, set[int]]:
    """User ids on the shop's suppression list before the instant ``until`` (the end of the
    shop's local day), per channel (a row for channel ``all`` suppresses every channel)."""
    rows = query_frame(
        conn, f"select user_id, channel from {schema}.dim_suppression where suppressed_at < :until", until=until
    )
    everywhere = set(rows.loc[rows["channel"] == "all", "user_id"].astype(int))
    return {
        channel: everywhere | set(rows.loc[rows["channel"] == channel, "user_id"].astype(int))
        for channel in CONSENT_FIELD
    }


def _recently_contacted(conn: sa.Connection, schema: str, day: date, settings: CampaignsConfig) -> dict[str, set[int]]:
    """Per active campaign, the customers it reached (either group) in its ``recontact_days``
    before ``day``."""
    longest = max((settings.recontact_days(c) for c in settings.campaigns), default=0)
    rows = query_frame(
        conn,
        f"select campaign_id, user_id, contact_date from {schema}.fct_campaign_contacts "
        "where contact_date >= :first and contact_date < :d",
        first=day - timedelta(days=longest),
        d=day,
    )
    since = pd.Timestamp(day) - pd.to_timedelta(
        rows["campaign_id"].map({c.id: settings.recontact_days(c) for c in settings.campaigns}).fillna(0), unit="D"
    )
    recent = rows[pd.to_datetime(rows["contact_date"]) >= since]
    return {c: set(users.astype(int)) for c, users in recent.groupby("campaign_id")["user_id"]}


def allocate_campaigns(config: PipelineConfig, day: date, settings: CampaignsConfig | None = None) -> dict:
    """Allocate D's campaigns and publish targets, funnel and contacts (see the module docstring)."""
    settings = settings or load_campaigns(
        config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
    )
    schema = config.warehouse.schema_name
    kinds = {name: kind for name, (kind, _) in audience_fields(config.customers.tags_file).items()}
    with warehouse_engine(config).connect() as conn:
        frame = audience_frame(config, conn, day)
        history = query_frame(
            conn,
            f"select user_id, count(*) as contacts from {schema}.fct_campaign_contacts "
            "where contact_date between :first and :last group by user_id",
            first=day - timedelta(days=6),
            last=day - timedelta(days=1),
        )
        suppressed = _suppression_list(conn, schema, window_for(day, config.tz).end)
        recent = _recently_contacted(conn, schema, day, settings)
        chosen, funnel = allocate(
            frame, settings, day, kinds, history.set_index("user_id")["contacts"], suppressed, recent
        )
        sources = product_sources(conn, schema, day, frame) if len(chosen) else {}
        jumps = audience_jumps(conn, schema, day, funnel)
    for jump in jumps:
        log.warning("%s campaign %s: %s", day, jump["campaign_id"], jump["message"])
    loaded_at = datetime.now(timezone.utc)
    campaigns = {c.id: c for c in settings.campaigns}
    targets = []
    for campaign_id, rows in chosen.groupby("campaign_id", sort=False):
        campaign = campaigns[campaign_id]
        picked = frame.iloc[rows["row"].to_numpy()].reset_index(drop=True)
        part = rows.drop(columns="row").reset_index(drop=True)
        part["campaign_version"] = campaign.version
        part["channel"] = campaign.channel
        part["reason_code"] = reason_codes(picked, campaign, kinds).to_numpy()
        part = pd.concat([part, attach_products(part["user_id"], campaign, sources)], axis=1)
        part["score_name"] = campaign.score
        part["score"] = picked[campaign.score].astype(float).to_numpy() if campaign.score else np.nan
        targets.append(part)
    targets = pd.concat(targets, ignore_index=True) if targets else pd.DataFrame()
    outputs = [
        snapshot("mart_campaign_targets", frame_to_arrow(targets.assign(snapshot_date=day, loaded_at=loaded_at))),
        snapshot(
            "mart_campaign_funnel", frame_to_arrow(funnel.assign(snapshot_date=day, exported=None, loaded_at=loaded_at))
        ),
        Output(
            "fct_campaign_contacts",
            frame_to_arrow(_contacts(targets, settings, day, loaded_at)),
            where="contact_date = :d",
        ),
    ]
    rows = publish(
        config, day, "allocate", "campaigns", outputs,
        rows_in=len(frame),
        details={"campaigns": funnel.set_index("campaign_id")[list(FUNNEL_STEPS)].to_dict(orient="index"),
                 "audience_jumps": jumps},
    )  # fmt: skip
    return {"snapshot_date": day.isoformat(), "customers": len(frame), "rows_by_table": rows,
            "funnel": funnel.set_index("campaign_id")[list(FUNNEL_STEPS)].to_dict(orient="index"),
            "audience_jumps": jumps}  # fmt: skip


JUMP_NIGHTS = 7  # tonight's audience is compared with the median of this many nights before
JUMP_RATIO = 3.0  # ... and reported when it is this many times larger (or smaller)


def audience_jumps(conn: sa.Connection, schema: str, day: date, funnel: pd.DataFrame) -> list[dict]:
    """Campaigns whose audience tonight (both arms) is :data:`JUMP_RATIO` times above or below
    its median over the :data:`JUMP_NIGHTS` nights before: a rule or a data change worth a look
    before the messages go out. Needs at least 3 earlier nights with an audience."""
    history = query_frame(
        conn,
        f"select campaign_id, control + target as audience from {schema}.mart_campaign_funnel "
        "where snapshot_date >= :first and snapshot_date < :d",
        first=day - timedelta(days=JUMP_NIGHTS),
        d=day,
    )
    jumps = []
    for row in funnel.itertuples():
        earlier = history.loc[history["campaign_id"] == row.campaign_id, "audience"]
        tonight = int(row.control + row.target)
        if (earlier > 0).sum() < 3:
            continue
        median = float(earlier.median())
        if median > 0 and (tonight > JUMP_RATIO * median or tonight < median / JUMP_RATIO):
            jumps.append({
                "campaign_id": row.campaign_id, "audience": tonight, "median_before": median,
                "message": f"audience {tonight:,} against a median of {median:,.0f} over the {JUMP_NIGHTS} "
                           f"nights before ({tonight / median:.1f}x); check its rule and the data before sending",
            })  # fmt: skip
    return jumps


def _contacts(targets: pd.DataFrame, settings: CampaignsConfig, day: date, loaded_at: datetime) -> pd.DataFrame:
    if targets.empty:
        return targets
    windows = {c.id: settings.window_days(c) for c in settings.campaigns}
    return pd.DataFrame(
        {
            "contact_date": day,
            "campaign_id": targets["campaign_id"],
            "user_id": targets["user_id"],
            "arm": targets["arm"],
            "campaign_version": targets["campaign_version"],
            "channel": targets["channel"],
            "attribution_window_days": targets["campaign_id"].map(windows),
            "loaded_at": loaded_at,
        }
    )
