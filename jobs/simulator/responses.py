"""The shop's messaging system and how its customers answer campaigns.

Every night the pipeline exports each campaign's target list (``campaigns/<id>/date=C/``
under the exports root). The messaging system sends those messages the next morning, but only
for a complete export: one whose files match the sizes and sha256 checksums of its
``_manifest.json`` (an export that does not is refused and counted, as a sender would).

A contacted customer answers with the campaign's **true uplift**
(:attr:`SimulationSpec.campaign_uplift`): with that probability they place one extra order,
on top of whatever they would have bought anyway, within :data:`RESPONSE_DAYS` days after the
contact date, for the first product the message attached (else a product drawn by
popularity), at its price then, paid and delivered (never cancelled or refunded). So the true
effect of a campaign on **orders per contacted customer** is exactly its uplift, and on a
cohort's target group (everyone allocated, contacted or not) it is the uplift times the share
of the group that was exported. Control customers get no message and no extra order. Campaigns
not in the spec have no effect.

Answers depend only on the spec and the export's rows (each export has a random stream of its
own, keyed by campaign and date), so materialising again gives the same orders, and a date's
orders never change when later exports arrive. The orders join the world's orders, items and
status history (ids from :data:`RESPONSE_ORDER_ID_BASE`, hashed from campaign, date and
customer) and reach the source database like any other order; every contacted customer is in
the truth table ``campaign_responses``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import zlib
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from jobs.platform.storage import Storage, sha256_hex
from jobs.simulator.spec import NS_PER_DAY, NS_PER_HOUR, NS_PER_MIN, World, _local_midnights_ns, _ms, _utc

log = logging.getLogger(__name__)
RESPONSE_DAYS = 2  # a customer who answers buys on one of the 2 days after the contact date
RESPONSE_ORDER_ID_BASE = 10**15  # far above the shop's own order ids
SEND_CHANNEL = {"push": "app", "email": "web", "sms": "mini_program"}  # where an answer is placed
_EXPORT = re.compile(r"^campaigns/(?P<campaign>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/_manifest\.json$")
RESPONSE_COLUMNS = ("campaign_id", "contact_date", "user_id", "true_uplift", "responded", "order_id", "ordered_at")


def sent_messages(exports: Storage, before: date) -> tuple[pd.DataFrame, list[str]]:
    """Every exported target row of a contact date before ``before`` whose export is complete
    (``campaign_id``, ``contact_date``, ``user_id``, ``channel``, ``product_id``: the first
    attached product or missing), and the exports refused (their manifest's key)."""
    frames, refused = [], []
    for info in exports.list("campaigns/"):
        match = _EXPORT.match(info.key)
        if not match or date.fromisoformat(match["date"]) >= before:
            continue
        prefix = info.key.rsplit("/", 1)[0] + "/"
        manifest = json.loads(exports.read_bytes(info.key))
        files = {name: exports.read_bytes(prefix + name) for name in manifest.get("files", {})}
        if "targets.parquet" not in files or any(
            sha256_hex(data) != manifest["files"][name]["sha256"] for name, data in files.items()
        ):
            refused.append(info.key)
            continue
        rows = pq.read_table(io.BytesIO(files["targets.parquet"])).to_pandas()
        attached = rows.reindex(columns=["product_id_1", "product_id_2", "product_id_3"]).bfill(axis=1)
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": match["campaign"],
                    "contact_date": date.fromisoformat(match["date"]),
                    "user_id": rows["user_id"].astype(np.int64),
                    "channel": manifest.get("channel"),
                    "product_id": attached["product_id_1"].astype("Int64"),
                }
            )
        )
    if refused:
        log.warning("messaging system refused %d exports that do not match their manifest", len(refused))
    columns = ["campaign_id", "contact_date", "user_id", "channel", "product_id"]
    sent = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return sent.sort_values(["contact_date", "campaign_id", "user_id"], ignore_index=True), refused


def _order_ids(seed: int, sent: pd.DataFrame) -> np.ndarray:
    keys = (
        f"{seed}:{c}:{d.isoformat()}:{u}"
        for c, d, u in sent[["campaign_id", "contact_date", "user_id"]].itertuples(index=False)
    )
    return np.array(
        [
            RESPONSE_ORDER_ID_BASE + int(hashlib.sha256(k.encode()).hexdigest()[:13], 16) % RESPONSE_ORDER_ID_BASE
            for k in keys
        ],
        dtype=np.int64,
    )


def _answers(world: World, sent: pd.DataFrame) -> pd.DataFrame:
    """Per sent message: whether the customer answers, when and what they buy."""
    spec, uplift = world.spec, dict(world.spec.campaign_uplift)
    parts = []
    popular = world.order_items["true_product_id"].value_counts()
    for (campaign, day), group in sent.groupby(["campaign_id", "contact_date"], sort=True):
        rng = np.random.default_rng([spec.seed, zlib.crc32(f"responses:{campaign}:{day.isoformat()}".encode())])
        n = len(group)
        p = float(uplift.get(campaign, 0.0))
        responded = rng.random(n) < p
        offset = rng.integers(1, RESPONSE_DAYS + 1, n)  # the day after the contact date, or later
        hour = rng.uniform(8, 23, n)
        fallback = (
            rng.choice(popular.index.to_numpy(), n, p=(popular / popular.sum()).to_numpy()) if len(popular) else 1
        )
        midnights = _local_midnights_ns(
            [day + timedelta(days=int(k)) for k in range(1, RESPONSE_DAYS + 1)], spec.timezone
        )
        parts.append(
            group.assign(
                true_uplift=p,
                responded=responded,
                ordered_ns=_ms(midnights[offset - 1] + hour * NS_PER_HOUR),
                product=group["product_id"].fillna(pd.Series(fallback, index=group.index)).astype(np.int64),
            )
        )
    return pd.concat(parts, ignore_index=True)


def _price_at(world: World, product: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """Each product's price in the version current at the instant (its first version if none)."""
    versions = world.product_versions[["product_id", "price", "updated_at"]].copy()
    versions["at"] = versions["updated_at"].array.asi8
    wanted = pd.DataFrame({"product_id": product, "at": ns, "row": np.arange(len(product))}).sort_values("at")
    found = pd.merge_asof(wanted, versions.sort_values("at")[["product_id", "at", "price"]], on="at", by="product_id")
    first = versions.drop_duplicates("product_id").set_index("product_id")["price"]
    price = found["price"].fillna(found["product_id"].map(first)).fillna(0.0)
    return np.round(price.to_numpy(float)[np.argsort(found["row"].to_numpy())], 2)


def with_responses(world: World, exports: Storage, as_of: date) -> World:
    """The world plus the answers to every complete export of a contact date before ``as_of``
    (orders dated later than ``as_of`` are kept too: the source state cuts them by time)."""
    sent, refused = sent_messages(exports, as_of)
    refused_frame = pd.DataFrame({"manifest": pd.Series(refused, dtype=object)})
    if sent.empty:
        empty = pd.DataFrame(columns=list(RESPONSE_COLUMNS))
        return dataclasses.replace(
            world, truth={**world.truth, "campaign_responses": empty, "refused_exports": refused_frame}
        )
    answers = _answers(world, sent)
    answers["order_id"] = _order_ids(world.spec.seed, answers)
    if answers["order_id"].duplicated().any():  # 52-bit hashes: would need billions of messages
        raise ValueError("campaign response order ids collide; change the simulation seed")
    buy = answers[answers["responded"]].reset_index(drop=True)
    created = buy["ordered_ns"].to_numpy(np.int64)
    price = _price_at(world, buy["product"].to_numpy(), created)
    paid = _ms(created + 2 * NS_PER_MIN)
    shipped = _ms(paid + 24 * NS_PER_HOUR)
    completed = _ms(shipped + 4 * NS_PER_DAY)
    order_id = buy["order_id"].to_numpy(np.int64)
    orders = pd.DataFrame(
        {
            "order_id": order_id,
            "user_id": buy["user_id"].to_numpy(np.int64),
            "session_id": None,
            "created_at": _utc(created),
            "paid_at": _utc(paid),
            "channel": buy["channel"].map(SEND_CHANNEL).fillna("web").to_numpy(object),
            "subtotal": price,
            "discount_amount": 0.0,
            "total_amount": price,
            "true_total_amount": price,
            "coupon_code": None,
            "final_status": "completed",
            "is_promo_day": False,
            "dirt_reason": None,
        }
    )
    items = pd.DataFrame(
        {
            "order_id": order_id,
            "line_no": 1,
            "product_id": buy["product"].to_numpy(np.int64),
            "quantity": 1,
            "unit_price": price,
            "true_product_id": buy["product"].to_numpy(np.int64),
            "dirt_reason": None,
        }
    )
    steps = [("created", created), ("paid", paid), ("shipped", shipped), ("completed", completed)]
    history = pd.DataFrame(
        {
            "order_id": np.repeat(order_id, len(steps)),
            "status": np.tile([s for s, _ in steps], len(order_id)),
            "changed_at": _utc(np.column_stack([at for _, at in steps]).ravel()),
        }
    )
    truth = answers.assign(
        order_id=answers["order_id"].where(answers["responded"]).astype("Int64"),
        ordered_at=_utc(np.where(answers["responded"], answers["ordered_ns"], np.iinfo(np.int64).max)),
    )[list(RESPONSE_COLUMNS)]
    log.info(
        "%d of %d contacted customers answered %d exports",
        len(buy),
        len(answers),
        answers.groupby(["campaign_id", "contact_date"]).ngroups,
    )
    return dataclasses.replace(
        world,
        orders=pd.concat([world.orders, orders], ignore_index=True),
        order_items=pd.concat([world.order_items, items], ignore_index=True),
        order_status_history=pd.concat([world.order_status_history, history], ignore_index=True),
        truth={**world.truth, "campaign_responses": truth, "refused_exports": refused_frame},
    )
