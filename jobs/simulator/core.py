"""A deterministic simulator of an online shop, with known ground truth.

:func:`generate` builds a whole :class:`World` in memory from a :class:`SimulationSpec`: users
with latent interests and lifecycle trajectories, a long-tailed catalogue, sessions and their
behaviour events, orders with a status lifecycle, and the plan of every landing file line
(including the dirt). Everything is vectorised numpy/pandas and depends only on the spec, so
the same spec always gives the same world, byte for byte.

:func:`materialize` writes what the shop knows by the end of a local day ``as_of``:

* gzipped JSON Lines event files under ``events/date=YYYY-MM-DD/hour=HH/`` (UTC write hour) in
  the landing storage; a file is written once its write hour has ended, and never rewritten;
* the source tables ``users``, ``products``, ``orders``, ``order_items`` in a SQLAlchemy
  database, synchronised to their state at the end of ``as_of`` (new rows inserted, changed
  rows replaced, rows unknown at ``as_of`` removed);
* the ground truth as Parquet under ``truth_dir`` (what each file holds, true lifecycle states,
  latent interests, dirty orders), which the pipeline never reads and tests compare against.

Materialising day ``D`` and then ``D + 1`` gives exactly the same landing files, database rows
and truth as materialising ``D + 1`` once.

Dirt (scaled by ``SimulationSpec.dirt_rate``; 0 disables all of it, including the valid but messy
texture): each dirty line has exactly one defect, applied to a distinct base event.
``duplicate`` lines are exact copies of a valid line written in the same or a later file; the
rejected kinds are ``malformed_json``, ``missing_required_field``, ``wrong_type``,
``invalid_timestamp``, ``invalid_enum`` and ``unknown_product_id``. Valid but messy: mixed UTC
offsets in ``event_ts``, unknown extra fields, bot sessions (100-300 product views in a couple
of minutes), and late files (an app upload batch written 1-2 days after its events). Source
dirt: orders with a negative or absurd ``total_amount`` (``invalid_amount``) and order items
with an unknown ``product_id``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.interface import (
    CHANNELS,
    EVENT_FIELDS,
    EVENT_TYPES,
    ORDER_STATUSES,
    REQUIRED_EVENT_FIELDS,
)
from jobs.platform.storage import Storage, open_storage

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

PAGE_VIEW, SEARCH, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, FAVORITE, CHECKOUT_START = range(7)
PRODUCT_EVENTS = (PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, FAVORITE)
DEVICES = ("desktop", "ios", "android")
UTM_SOURCES = ("google", "baidu", "wechat", "douyin", "email", "sms", "direct")
EVENT_KEYS = EVENT_FIELDS
REQUIRED_FIELDS = REQUIRED_EVENT_FIELDS

LINE_KINDS = (
    "valid",
    "duplicate",
    "malformed_json",
    "missing_required_field",
    "wrong_type",
    "invalid_timestamp",
    "invalid_enum",
    "unknown_product_id",
)
VALID, DUPLICATE, MALFORMED, MISSING, WRONG_TYPE, BAD_TS, BAD_ENUM, UNKNOWN_PRODUCT = range(8)
REJECT_KINDS = LINE_KINDS[2:]
UNKNOWN_PRODUCT_ID_BASE = 999_999

LIFECYCLE_STATES = ("prospect", "new", "habitual", "declining", "churned", "reactivated")
PROSPECT, NEW, HABITUAL, DECLINING, CHURNED, REACTIVATED = range(6)
NEW_PHASE_DAYS = 21

# status codes index ORDER_STATUSES (jobs.platform.interface)
CREATED, PAID, SHIPPED, COMPLETED, CANCELLED, REFUNDED = range(6)
ORDER_ID_BASE = 100_000

# l1 -> (l2 names, median price, log-sd of price, share of the catalogue, extra search words)
CATALOG: dict[str, tuple[tuple[str, ...], float, float, float, tuple[str, ...]]] = {
    "Apparel": (
        ("T-Shirts", "Dresses", "Jackets", "Jeans", "Knitwear"),
        159,
        0.55,
        0.20,
        ("连衣裙", "外套", "卫衣"),
    ),
    "Shoes": (("Sneakers", "Running Shoes", "Boots", "Sandals"), 399, 0.45, 0.10, ("运动鞋",)),
    "Beauty": (
        ("Skincare", "Makeup", "Fragrance", "Hair Care"),
        129,
        0.65,
        0.14,
        ("面霜", "口红", "防晒"),
    ),
    "Electronics": (
        ("Phones", "Headphones", "Smart Watches", "Chargers", "Tablets"),
        699,
        0.9,
        0.12,
        ("耳机", "手机", "充电器"),
    ),
    "Home & Kitchen": (
        ("Cookware", "Bedding", "Storage", "Small Appliances"),
        199,
        0.7,
        0.14,
        ("锅", "四件套"),
    ),
    "Sports & Outdoors": (("Yoga", "Camping", "Cycling"), 259, 0.7, 0.09, ("瑜伽垫", "帐篷")),
    "Food & Grocery": (
        ("Snacks", "Tea", "Coffee", "Instant Food"),
        49,
        0.5,
        0.12,
        ("零食", "茶叶", "咖啡"),
    ),
    "Baby & Kids": (("Diapers", "Toys", "Kids Clothing"), 139, 0.6, 0.09, ("纸尿裤", "玩具")),
}
CATEGORY_L1 = tuple(CATALOG)
N_CAT = len(CATEGORY_L1)
BRANDS = (
    "Lumina", "Northpeak", "Aurora", "Kestrel", "Mistral", "Jadeleaf", "Redwood", "Solis",
    "Tidewater", "Orchid", "Vela", "Zephyr", "Nimbus", "Cobalt", "Ember", "Harbor",
    "Ivory", "Juniper", "Koi", "Lotus", "Meridian", "Nova", "Onyx", "Pebble",
    "Quill", "Rook", "Sable", "Tundra", "Umber", "Vireo", "Willow", "Xenon",
    "Yarrow", "Zenith", "Bamboo", "Cinder", "Dune", "Fable", "Grove", "Halo",
)  # fmt: skip
N_BRAND = len(BRANDS)
# latent tastes (think styles: minimalist, sporty, premium, playful...): every product has one,
# every user a concentrated mix of them; never published, only behaviour reveals them
N_TASTE = 8
TASTE_FOCUS = 0.9  # share of a logged-in user's in-category views that follow their taste
TASTE_CONCENTRATION = 0.15  # Dirichlet parameter of a user's taste mix (smaller: fewer tastes)
TASTE_POPULARITY = 0.3  # within a taste, product choice follows popularity ** this
TASTE_CART_FLOOR = 0.2  # add-to-cart propensity for a product of a taste the user does not like
REVISIT = 0.25  # share of a logged-in user's product views that go back to one seen before
REVISIT_CART_BOOST = 1.5  # a product looked at again is more likely to go into the cart
# brand b is made mostly for category b % N_CAT; every third brand also sells in a second one
BRAND_CATEGORIES: tuple[tuple[int, ...], ...] = tuple(
    (b % N_CAT, (b * 3 + 1) % N_CAT)
    if b % 3 == 0 and (b * 3 + 1) % N_CAT != b % N_CAT
    else (b % N_CAT,)
    for b in range(N_BRAND)
)
ADJECTIVES = ("Classic", "Pro", "Lite", "Air", "Max", "Soft", "Urban", "Eco", "Plus", "Mini")
REGIONS: dict[str, tuple[tuple[str, ...], float]] = {
    "East": (("Shanghai", "Hangzhou", "Nanjing", "Suzhou"), 0.32),
    "North": (("Beijing", "Tianjin", "Jinan"), 0.2),
    "South": (("Guangzhou", "Shenzhen", "Xiamen"), 0.2),
    "Central": (("Wuhan", "Changsha", "Zhengzhou"), 0.1),
    "Southwest": (("Chengdu", "Chongqing", "Kunming"), 0.12),
    "Northeast": (("Shenyang", "Harbin", "Dalian"), 0.06),
}
NAME_STEMS = (
    "li",
    "wang",
    "zhang",
    "liu",
    "chen",
    "yang",
    "zhao",
    "huang",
    "zhou",
    "wu",
    "xu",
    "sun",
    "hu",
    "zhu",
    "gao",
    "lin",
    "he",
    "guo",
    "ma",
    "luo",
)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.cn")
HOUR_WEIGHTS = np.array(
    [0.9, 0.5, 0.3, 0.18, 0.12, 0.15, 0.3, 0.55, 0.85, 1.0, 1.1, 1.2,
     1.3, 1.2, 1.1, 1.1, 1.15, 1.25, 1.35, 1.6, 1.9, 2.1, 2.0, 1.5]
)  # fmt: skip
PROMO_HOUR_BOOST = {0: 4.0, 1: 2.5, 20: 1.3, 21: 1.4, 22: 1.4, 23: 1.3}
WEEKDAY_FACTOR = np.array([0.95, 0.93, 0.95, 0.98, 1.05, 1.2, 1.25])  # Monday first
# utm_source probabilities by channel over (null, *UTM_SOURCES)
UTM_BY_CHANNEL = np.array(
    [
        [0.40, 0.10, 0.22, 0.04, 0.06, 0.06, 0.02, 0.10],  # web
        [0.60, 0.00, 0.02, 0.08, 0.10, 0.05, 0.08, 0.07],  # app
        [0.35, 0.00, 0.00, 0.50, 0.05, 0.02, 0.05, 0.03],  # mini_program
    ]
)
FESTIVALS = ((6, 18), (11, 11), (12, 12))

BAD_PRICES = ("free", "N/A", "n/a", "--")
BAD_USER_IDS = ("abc", "user_x", "xyz")
BAD_TIMESTAMPS = (
    "yesterday",
    "not-a-timestamp",
    "1970-01-01T08:00:00+08:00",
    "2099-12-31T23:59:59+08:00",
    "2026-13-45T25:61:00+08:00",
)
BAD_EVENT_TYPES = ("pageview2", "click", "tap")
BAD_CHANNELS = ("tv", "pos", "kiosk")
OTHER_OFFSETS = ((0, "Z"), (0, "+00:00"), (9 * 60, "+09:00"), (-5 * 60, "-05:00"))

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_HOUR = 3600 * NS_PER_S
NS_PER_DAY = 24 * NS_PER_HOUR
NO_TIME = np.iinfo(np.int64).max


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationSpec:
    """Size, period and texture of a simulated shop. Same spec, same world."""

    seed: int = 42
    start_date: date = date(2026, 9, 1)  # first simulated local day
    days: int = 60
    users: int = 2000  # registered users at the end (signups spread over time, some before)
    products: int = 400
    sessions_per_user_per_week: float = 1.5  # mean of the latent activity, heterogeneous
    anonymous_share: float = 0.3  # share of sessions by not-logged-in visitors
    dirt_rate: float = 0.03  # overall dirt level; 0 disables ALL dirt kinds
    timezone: str = "Asia/Shanghai"


@dataclass(repr=False)
class World:
    """Everything :func:`generate` made; pure data, nothing written.

    ``users``/``products`` hold the source-table rows at the end of the simulated period
    (``user_versions``/``product_versions`` hold every version with its ``updated_at``);
    ``orders``/``order_items`` the rows as the source DB reports them (dirt included) plus
    truth columns; ``events`` one row per logical event (times UTC) with the landing plan
    (``write_ts``, ``file_key``, ``dirt``); ``files``/``lines`` the exact content plan of every
    landing file; ``truth`` the latent ground truth (see :func:`materialize`).
    """

    spec: SimulationSpec
    users: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    events: pd.DataFrame
    order_status_history: pd.DataFrame
    truth: dict[str, pd.DataFrame]
    user_versions: pd.DataFrame = field(default_factory=pd.DataFrame)
    product_versions: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: pd.DataFrame = field(default_factory=pd.DataFrame)
    lines: pd.DataFrame = field(default_factory=pd.DataFrame)
    promo_days: tuple[date, ...] = ()

    def __repr__(self) -> str:
        return (
            f"World(seed={self.spec.seed}, days={self.spec.days}, users={len(self.users)}, "
            f"products={len(self.products)}, events={len(self.events)}, "
            f"orders={len(self.orders)}, files={len(self.files)})"
        )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _rng(spec: SimulationSpec, stream: str) -> np.random.Generator:
    """An independent random stream per component, so components do not shift each other."""
    return np.random.default_rng([spec.seed, zlib.crc32(stream.encode())])


def _ms(ns: np.ndarray | float) -> np.ndarray:
    """Round nanoseconds down to whole milliseconds (int64)."""
    whole = np.asarray(ns).astype(np.int64)  # float inputs are exact to well under 1 ms
    return (whole // NS_PER_MS) * NS_PER_MS


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    """int64 ns (NO_TIME = missing) -> tz-aware UTC datetimes (assigned by position)."""
    ns = np.asarray(ns, dtype=np.int64)
    values = np.where(ns == NO_TIME, np.iinfo(np.int64).min, ns).view("datetime64[ns]")
    return pd.DatetimeIndex(values).tz_localize("UTC")


def _nullable_int(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(
        np.where(missing, 0, values).astype(np.int64), missing.astype(bool)
    )


def _local_midnights_ns(days: list[date], tz: str) -> np.ndarray:
    naive = pd.DatetimeIndex([pd.Timestamp(d) for d in days]).as_unit("ns")
    local = naive.tz_localize(tz, ambiguous=np.zeros(len(naive), bool), nonexistent="shift_forward")
    return local.tz_convert("UTC").asi8.astype(np.int64)


def _wall_ns(ns: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock time (as naive ns) of UTC instants."""
    index = pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]"))
    return index.tz_localize("UTC").tz_convert(tz).tz_localize(None).asi8


def _local_days(ns: np.ndarray, tz: str) -> np.ndarray:
    """Local calendar date (datetime64[D]) of UTC instants."""
    return _wall_ns(ns, tz).view("datetime64[ns]").astype("datetime64[D]")


_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint8).reshape(256, 2)


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int = 16, uuid: bool = False) -> np.ndarray:
    """``n`` random lower-case hex ids (object array of str); uuid4-shaped when ``uuid``."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    if uuid:
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = _HEX[raw].reshape(n, nbytes * 2)
    if uuid:
        out = np.full((n, 36), ord("-"), np.uint8)
        for dst, src in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
            width = 12 if src == 20 else (8 if src == 0 else 4)
            out[:, dst : dst + width] = hexed[:, src : src + width]
        hexed = out
    width = hexed.shape[1]
    return np.ascontiguousarray(hexed).view(f"S{width}").ravel().astype(str).astype(object)


def _randint(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    """Integers in [low, high) with high clamped to at least low + 1."""
    return rng.integers(low, max(high, low + 1), size=n)


class _GroupedSampler:
    """Draw an item of a given group with probability proportional to its weight."""

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int):
        keep = np.flatnonzero(weights > 0)
        order = keep[np.lexsort((keep, groups[keep]))]
        g = groups[order]
        w = weights[order].astype(np.float64)
        totals = np.bincount(g, weights=w, minlength=n_groups)
        cum = np.cumsum(w)
        starts = np.searchsorted(g, np.arange(n_groups))
        before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        within = (cum - before[g]) / totals[g]
        last = np.r_[g[1:] != g[:-1], True] if len(g) else np.zeros(0, bool)
        within[last] = 1.0
        self.cdf = g + within
        self.items = order
        self.has_items = totals > 0

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.items[np.searchsorted(self.cdf, groups + u, side="right")]


class _RowSampler:
    """Draw a column index per row from row-wise probability vectors (rows of a matrix)."""

    def __init__(self, probs: np.ndarray):
        cum = np.cumsum(probs, axis=1)
        cum /= cum[:, -1:]
        cum[:, -1] = 1.0
        self.k = probs.shape[1]
        self.flat = (cum + np.arange(len(probs))[:, None]).ravel()

    def sample(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.flat, rows + u, side="right") - rows * self.k


def _shop_price(rng: np.random.Generator, raw: np.ndarray) -> np.ndarray:
    """Shop-like prices: 159.00, 158.99 or 158.90."""
    base = np.clip(np.round(raw), 2, 6999)
    ending = rng.choice(np.array([0.0, -0.01, -0.1]), size=len(base), p=[0.4, 0.35, 0.25])
    return np.round(base + ending, 2)


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------


@dataclass
class _Calendar:
    days: list[date]  # the simulated local days, plus the day after
    day_start: np.ndarray  # UTC ns of each local midnight, len(days)
    promo: np.ndarray  # bool per simulated day
    traffic: np.ndarray  # relative traffic per simulated day
    hour_cdf: np.ndarray  # (2, 24): diurnal cdf on normal / promo days
    tz: str


def _promo_mask(spec: SimulationSpec) -> np.ndarray:
    days = [spec.start_date + timedelta(days=i) for i in range(spec.days)]
    mask = np.array([(d.month, d.day) in FESTIVALS for d in days], dtype=bool)
    if mask.sum() < 2:
        for frac in (0.3, 0.75):
            idx = round(spec.days * frac)
            if idx < spec.days:
                mask[idx] = True
    return mask


def _calendar(spec: SimulationSpec) -> _Calendar:
    days = [spec.start_date + timedelta(days=i) for i in range(spec.days + 1)]
    day_start = _local_midnights_ns(days, spec.timezone)
    promo = _promo_mask(spec)
    weekday = WEEKDAY_FACTOR / WEEKDAY_FACTOR.mean()
    traffic = weekday[[d.weekday() for d in days[:-1]]] * (1 + 0.003 * np.arange(spec.days))
    eve = np.r_[promo[1:], False] & ~promo
    traffic = traffic * np.where(promo, 3.0, 1.0) * np.where(eve, 0.85, 1.0)
    promo_hours = HOUR_WEIGHTS.copy()
    for hour, boost in PROMO_HOUR_BOOST.items():
        promo_hours[hour] *= boost
    hour_cdf = np.cumsum(np.vstack([HOUR_WEIGHTS, promo_hours]), axis=1)
    hour_cdf /= hour_cdf[:, -1:]
    return _Calendar(days, day_start, promo, traffic, hour_cdf, spec.timezone)


def _times_in_days(rng: np.random.Generator, cal: _Calendar, day: np.ndarray) -> np.ndarray:
    """A local time of day following the diurnal curve (promo days have a midnight rush)."""
    u = rng.random(len(day))
    hour = (u[:, None] > cal.hour_cdf[cal.promo[day].astype(int)]).sum(axis=1)
    within = rng.random(len(day)) * NS_PER_HOUR
    return _ms(cal.day_start[day] + hour * NS_PER_HOUR + within)


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


def _make_products(spec: SimulationSpec, cal: _Calendar) -> tuple[pd.DataFrame, dict]:
    rng = _rng(spec, "products")
    n = spec.products
    shares = np.array([CATALOG[c][3] for c in CATEGORY_L1])
    cat = rng.choice(N_CAT, size=n, p=shares / shares.sum())
    cat[:N_CAT] = np.arange(N_CAT)  # every category has products
    n_l2 = np.array([len(CATALOG[c][0]) for c in CATEGORY_L1])
    l2 = (rng.random(n) * n_l2[cat]).astype(int)
    brand = np.empty(n, dtype=np.int64)
    for c in range(N_CAT):
        members = np.flatnonzero(cat == c)
        makers = np.array([b for b in range(N_BRAND) if c in BRAND_CATEGORIES[b]])
        weights = 1.0 / (1 + np.arange(len(makers))) ** 0.8
        brand[members] = rng.choice(makers, size=len(members), p=weights / weights.sum())
    median = np.array([CATALOG[c][1] for c in CATEGORY_L1])[cat]
    sigma = np.array([CATALOG[c][2] for c in CATEGORY_L1])[cat]
    price = _shop_price(rng, np.exp(np.log(median) + sigma * rng.standard_normal(n)))
    rank = rng.permutation(n)
    popularity = 1.0 / (rank + 1.0) ** 1.05
    popularity /= popularity.sum()
    is_active = rng.random(n) >= 0.05
    is_active[:N_CAT] = True
    created = _ms(cal.day_start[0] - (20 + rng.random(n) * 700) * NS_PER_DAY)
    adjective = rng.integers(0, len(ADJECTIVES), n)
    model = rng.integers(100, 1000, n)
    l2_names = [CATALOG[CATEGORY_L1[c]][0] for c in range(N_CAT)]
    names = [
        f"{BRANDS[b]} {ADJECTIVES[a]} {l2_names[c][s]} {m}"
        for b, a, c, s, m in zip(brand, adjective, cat, l2, model, strict=True)
    ]
    # a few price changes during the period
    change = np.full(n, NO_TIME, dtype=np.int64)
    new_price = price.copy()
    if spec.days >= 3:
        changed = is_active & (rng.random(n) < 0.06)
        lo, hi = cal.day_start[0] + NS_PER_DAY, cal.day_start[-1] - NS_PER_DAY
        change[changed] = _ms(lo + rng.random(changed.sum()) * (hi - lo))
        new_price[changed] = _shop_price(
            rng, price[changed] * rng.uniform(0.75, 1.15, changed.sum())
        )
    base = pd.DataFrame(
        {
            "product_id": np.arange(1, n + 1),
            "name": names,
            "category_l1": np.array(CATEGORY_L1, dtype=object)[cat],
            "category_l2": np.array([l2_names[c][s] for c, s in zip(cat, l2, strict=True)], object),
            "brand": np.array(BRANDS, dtype=object)[brand],
            "price": price,
            "is_active": is_active,
            "updated_at": _utc(created),
        }
    )
    changed_rows = base[change != NO_TIME].copy()
    changed_rows["price"] = new_price[change != NO_TIME]
    changed_rows["updated_at"] = _utc(change[change != NO_TIME])
    versions = pd.concat([base, changed_rows], ignore_index=True)
    versions = versions.sort_values(["product_id", "updated_at"], kind="stable", ignore_index=True)
    taste = _rng(spec, "product-tastes").integers(0, N_TASTE, n)
    arrays = {
        "cat": cat,
        "brand": brand,
        "taste": taste,
        "price": price,
        "new_price": new_price,
        "change_ns": change,
        "popularity": popularity,
        "weight": popularity * is_active,
        "versions": versions,
    }
    return base, arrays


def _price_at(prod: dict, product: np.ndarray, ns: np.ndarray) -> np.ndarray:
    return np.where(
        ns >= prod["change_ns"][product], prod["new_price"][product], prod["price"][product]
    )


# --------------------------------------------------------------------------------------------
# Users and their lifecycle
# --------------------------------------------------------------------------------------------


def _make_users(spec: SimulationSpec, cal: _Calendar, prod: dict) -> dict:
    """Source rows (with versions) plus the latent per-user arrays that drive behaviour."""
    rng = _rng(spec, "users")
    signup, in_period = _signups(rng, spec, cal)
    frame = _user_profiles(rng, signup)
    versions = _user_versions(rng, cal, frame, signup)
    users = {"frame": frame, "versions": versions, "signup": signup, "in_period": in_period}
    users.update(_user_interests(rng, spec, prod, len(signup)))
    users.update(_trajectories(rng, spec, cal, signup, in_period))
    n = len(signup)
    id_rng = _rng(spec, "user-ids")
    users.update(
        phone_os=np.where(rng.random(n) < 0.45, 1, 2),  # ios / android
        pref_channel=rng.choice(3, size=n, p=[0.25, 0.5, 0.25]),
        consent_email=frame["consent_email"].to_numpy(),
        consent_sms=frame["consent_sms"].to_numpy(),
        app_anon=_hex_ids(id_rng, n, uuid=True),
        web_anon=_hex_ids(id_rng, n, uuid=True),
    )
    return users


def _signups(
    rng: np.random.Generator, spec: SimulationSpec, cal: _Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """Signup instants, sorted (user_id follows signup order), and whether in the period."""
    n = spec.users
    in_period = rng.random(n) < 0.35 * min(1.0, spec.days / 60)
    signup = np.empty(n, dtype=np.int64)
    k = int(in_period.sum())
    signup_day = rng.choice(spec.days, size=k, p=cal.traffic / cal.traffic.sum())
    signup[in_period] = _times_in_days(rng, cal, signup_day)
    signup[~in_period] = _ms(cal.day_start[0] - (0.01 + rng.random(n - k) * 540) * NS_PER_DAY)
    order = np.lexsort((np.arange(n), signup))
    return signup[order], in_period[order]


def _user_profiles(rng: np.random.Generator, signup: np.ndarray) -> pd.DataFrame:
    n = len(signup)
    region_names = list(REGIONS)
    region_p = np.array([REGIONS[r][1] for r in region_names])
    region = rng.choice(len(region_names), size=n, p=region_p / region_p.sum())
    n_cities = np.array([len(REGIONS[r][0]) for r in region_names])[region]
    city_idx = (rng.random(n) ** 1.5 * n_cities).astype(int)  # big cities first
    user_id = np.arange(1, n + 1)
    stems = rng.integers(0, len(NAME_STEMS), n)
    domains = rng.choice(len(EMAIL_DOMAINS), size=n, p=[0.4, 0.25, 0.15, 0.2])
    email = [
        f"{NAME_STEMS[s]}.{u}@{EMAIL_DOMAINS[d]}"
        for s, u, d in zip(stems, user_id, domains, strict=True)
    ]
    prefixes = np.array(["13", "15", "17", "18", "19"])[rng.integers(0, 5, n)]
    digits = rng.integers(0, 10**9, n)
    phone = np.array([f"+86{p}{d:09d}" for p, d in zip(prefixes, digits, strict=True)], object)
    phone[rng.random(n) < 0.08] = None
    city = [REGIONS[region_names[r]][0][c] for r, c in zip(region, city_idx, strict=True)]
    users = pd.DataFrame(
        {
            "user_id": user_id,
            "signup_at": _utc(signup),
            "gender": rng.choice(np.array(["F", "M", "U"], object), size=n, p=[0.55, 0.38, 0.07]),
            "birth_year": np.clip(np.round(rng.normal(1992, 9, n)), 1950, 2008).astype(int),
            "region": np.array(region_names, dtype=object)[region],
            "city": np.array(city, dtype=object),
            "email": np.array(email, dtype=object),
            "phone": phone,
            "consent_email": rng.random(n) < 0.6,
            "consent_sms": rng.random(n) < 0.35,
            "consent_push": rng.random(n) < 0.5,
        }
    )
    users["updated_at"] = users["signup_at"]
    return users


def _user_interests(
    rng: np.random.Generator, spec: SimulationSpec, prod: dict, n: int
) -> dict[str, np.ndarray]:
    """Concentrated category interests, brand interests mostly within those categories, a
    heterogeneous visit rate and propensity to buy."""
    cat_weight = np.array([CATALOG[c][3] for c in CATEGORY_L1])
    cat_aff = np.maximum(rng.gamma(0.35, size=(n, N_CAT)) * (cat_weight * N_CAT), 1e-9)
    cat_aff /= cat_aff.sum(axis=1, keepdims=True)
    has_products = np.bincount(prod["brand"][prod["weight"] > 0], minlength=N_BRAND) > 0
    primary = np.array([BRAND_CATEGORIES[b][0] for b in range(N_BRAND)])
    brand_aff = rng.gamma(0.25, size=(n, N_BRAND)) * (cat_aff[:, primary] + 0.03)
    brand_aff = np.maximum(brand_aff, 1e-12) * has_products
    brand_aff /= brand_aff.sum(axis=1, keepdims=True)
    mean = max(spec.sessions_per_user_per_week, 0.0)
    taste_aff = _rng(spec, "user-tastes").dirichlet(np.full(N_TASTE, TASTE_CONCENTRATION), size=n)
    return {
        "cat_aff": cat_aff,
        "brand_aff": brand_aff,
        "taste_aff": np.maximum(taste_aff, 1e-12),
        "activity": rng.gamma(0.7, mean / 0.7, n) if mean > 0 else np.zeros(n),
        "buy_propensity": rng.lognormal(-0.5, 1.0, n),
    }


def _trajectories(
    rng: np.random.Generator,
    spec: SimulationSpec,
    cal: _Calendar,
    signup: np.ndarray,
    in_period: np.ndarray,
) -> dict[str, np.ndarray]:
    """A lifecycle trajectory per user and its change days (relative to the first day)."""
    n, d = len(signup), spec.days
    traj = np.where(
        in_period,
        rng.choice([PROSPECT, NEW], size=n, p=[0.3, 0.7]),
        rng.choice(
            [PROSPECT, HABITUAL, DECLINING, CHURNED, REACTIVATED],
            size=n,
            p=[0.25, 0.3, 0.15, 0.18, 0.12],
        ),
    )
    t1 = _randint(rng, min(3, d - 1), d - 5, n)  # decline starts
    already = rng.random(n) < 0.4  # churned before the period
    duration = rng.integers(7, 15, n)
    t2 = np.where(already, -1, t1 + duration)  # churn day
    t1 = np.where((traj == CHURNED) & already, -1 - duration, t1)
    t3 = _randint(rng, max(1, int(0.2 * d)), d - 2, n)  # reactivation day
    signup_rel = (_local_days(signup, cal.tz) - np.datetime64(spec.start_date, "D")).astype(int)
    return {"trajectory": traj, "t1": t1, "t2": t2, "t3": t3, "signup_rel": signup_rel}


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


def _user_versions(
    rng: np.random.Generator, cal: _Calendar, users: pd.DataFrame, signup: np.ndarray
) -> pd.DataFrame:
    """Some users later change their city or e-mail consent (a newer row version)."""
    n = len(users)
    lo = np.maximum(signup, cal.day_start[0]) + NS_PER_DAY
    hi = cal.day_start[-1] - NS_PER_HOUR
    pick = (rng.random(n) < 0.05) & (lo < hi)
    when = _ms(lo + rng.random(n) * np.maximum(hi - lo, 0))
    changed = users[pick].copy()
    flip = rng.random(len(changed)) < 0.5
    changed.loc[flip, "consent_email"] = ~changed.loc[flip, "consent_email"]
    region_names = list(REGIONS)
    for i in np.flatnonzero(~flip):  # a few moves; tiny loop
        region = region_names[rng.integers(0, len(region_names))]
        changed.iloc[i, changed.columns.get_loc("region")] = region
        cities = REGIONS[region][0]
        changed.iloc[i, changed.columns.get_loc("city")] = cities[rng.integers(0, len(cities))]
    changed["updated_at"] = _utc(when[pick])
    versions = pd.concat([users, changed], ignore_index=True)
    return versions.sort_values(["user_id", "updated_at"], kind="stable", ignore_index=True)


def _lifecycle(spec: SimulationSpec, users: dict) -> tuple[np.ndarray, np.ndarray]:
    """(state codes, session-rate multiplier), each users x days; state -1 before signup."""
    n, d = spec.users, spec.days
    day = np.arange(d)[None, :]
    traj = users["trajectory"][:, None]
    t1, t2, t3 = users["t1"][:, None], users["t2"][:, None], users["t3"][:, None]
    rel = day - users["signup_rel"][:, None]
    state = np.full((n, d), HABITUAL, dtype=np.int8)
    mult = np.ones((n, d), dtype=np.float32)

    state[np.broadcast_to(traj == PROSPECT, (n, d))] = PROSPECT
    mult = np.where(traj == PROSPECT, 0.5, mult)

    declining = (traj == DECLINING) & (day >= t1)
    state[declining] = DECLINING
    mult = np.where(declining, np.maximum(0.25, 1 - 0.75 * (day - t1) / 21), mult)

    churn_traj = traj == CHURNED
    fading = churn_traj & (day >= t1) & (day < t2)
    state[fading] = DECLINING
    mult = np.where(fading, 1 - 0.8 * (day - t1) / np.maximum(t2 - t1, 1), mult)
    gone = churn_traj & (day >= t2)
    state[gone] = CHURNED
    mult = np.where(gone, 0.0, mult)

    react = traj == REACTIVATED
    dormant = react & (day < t3)
    state[dormant] = CHURNED
    mult = np.where(dormant, 0.0, mult)
    back = react & (day >= t3)
    state[back] = REACTIVATED
    mult = np.where(back, 1.3, mult)

    fresh = ((traj == NEW) | (traj == HABITUAL)) & (rel < NEW_PHASE_DAYS)
    state[fresh] = NEW
    mult = np.where(fresh, 1.3, mult)

    alive = rel >= 0
    state[~alive] = -1
    return state, (mult * alive).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def _make_sessions(
    spec: SimulationSpec, cal: _Calendar, users: dict, mult: np.ndarray, prod: dict
) -> pd.DataFrame:
    rng = _rng(spec, "sessions")
    n_users, n_days = mult.shape
    lam = users["activity"][:, None] / 7.0 * mult * cal.traffic[None, :]
    counts = rng.poisson(lam)
    rel = users["signup_rel"]
    joins = np.flatnonzero(users["in_period"] & (rel >= 0) & (rel < n_days))
    counts[joins, rel[joins]] = np.maximum(counts[joins, rel[joins]], 1)  # the signup visit
    uu, dd = np.nonzero(counts)
    reps = counts[uu, dd]
    s_user, s_day = np.repeat(uu, reps), np.repeat(dd, reps)
    start = _times_in_days(rng, cal, s_day)
    signup = users["signup"][s_user]
    first_day = s_day == rel[s_user]
    day_end = cal.day_start[s_day + 1]
    late_start = _ms(signup + rng.random(len(s_user)) * 0.98 * (day_end - signup))
    start = np.where(first_day & (signup > cal.day_start[s_day]), late_start, start)
    n_logged = len(s_user)

    # channel, device for logged-in sessions
    own = rng.random(n_logged) < 0.8
    channel = np.where(own, users["pref_channel"][s_user], rng.integers(0, 3, n_logged))
    desktop = (channel == 0) & (rng.random(n_logged) < 0.6)
    device = np.where(desktop, 0, users["phone_os"][s_user])
    anon = np.where(channel == 0, users["web_anon"][s_user], users["app_anon"][s_user])

    # anonymous visitors: most are seen once or twice
    share = spec.anonymous_share
    n_anon = round(n_logged * share / (1 - share)) if n_logged else 0
    visits = rng.geometric(1 / 1.35, size=max(n_anon, 1))
    n_visitors = int(np.searchsorted(np.cumsum(visits), n_anon)) + 1 if n_anon else 0
    visitor = np.repeat(np.arange(n_visitors), visits[:n_visitors])[:n_anon]
    v_channel = rng.choice(3, size=n_visitors, p=[0.55, 0.15, 0.3])
    v_os = np.where(rng.random(n_visitors) < 0.45, 1, 2)
    v_desktop = (v_channel == 0) & (rng.random(n_visitors) < 0.5)
    v_anon = _hex_ids(_rng(spec, "visitor-ids"), n_visitors, uuid=True)
    a_day = rng.choice(n_days, size=n_anon, p=cal.traffic / cal.traffic.sum())
    a_start = _times_in_days(rng, cal, a_day)

    # bots: anonymous crawlers with 100-300 product views in a couple of minutes
    # bot events are ~1% of all events at the default dirt rate, at most one bot a day if possible
    bot_events = (n_logged + n_anon) * 7.5 * 0.01 * spec.dirt_rate / 0.03
    n_bots = max(1, round(bot_events / 200)) if spec.dirt_rate > 0 else 0
    traffic = cal.traffic / cal.traffic.sum()
    b_day = rng.choice(n_days, size=n_bots, replace=n_bots > n_days, p=traffic)
    b_start = _ms(cal.day_start[b_day] + rng.random(n_bots) * NS_PER_DAY)
    b_anon = _hex_ids(_rng(spec, "bot-ids"), n_bots, uuid=True)

    kind = np.r_[np.zeros(n_logged, int), np.ones(n_anon, int), np.full(n_bots, 2)]
    sessions = pd.DataFrame(
        {
            "start_ns": np.r_[start, a_start, b_start].astype(np.int64),
            "day": np.r_[s_day, a_day, b_day],
            "user_idx": np.r_[s_user, np.full(n_anon + n_bots, -1)],
            "logged_in": kind == 0,
            "is_bot": kind == 2,
            "channel": np.r_[channel, v_channel[visitor], np.zeros(n_bots, int)],
            "device": np.r_[device, np.where(v_desktop, 0, v_os)[visitor], np.zeros(n_bots, int)],
            "anonymous_id": np.r_[anon, v_anon[visitor], b_anon],
        }
    )
    order = np.lexsort((np.arange(len(sessions)), sessions["start_ns"].to_numpy()))
    sessions = sessions.iloc[order].reset_index(drop=True)
    sessions["session_id"] = _hex_ids(_rng(spec, "session-ids"), len(sessions), nbytes=8)
    sessions["promo"] = cal.promo[sessions["day"].to_numpy()]
    _session_traffic_source(rng, sessions, users)
    _session_intent(rng, sessions, users, prod)
    return sessions


def _session_traffic_source(rng: np.random.Generator, sessions: pd.DataFrame, users: dict) -> None:
    n = len(sessions)
    utm = np.full(n, -1)
    channel, promo = sessions["channel"].to_numpy(), sessions["promo"].to_numpy()
    for ch in range(3):
        for is_promo in (False, True):
            mask = (channel == ch) & (promo == is_promo)
            p = UTM_BY_CHANNEL[ch].copy()
            if is_promo:
                p[5:7] *= 3  # campaign e-mails and texts
            utm[mask] = rng.choice(8, size=int(mask.sum()), p=p / p.sum()) - 1
    user = sessions["user_idx"].to_numpy()
    logged = user >= 0
    no_email = logged & ~users["consent_email"][np.maximum(user, 0)]
    no_sms = logged & ~users["consent_sms"][np.maximum(user, 0)]
    utm[(utm == UTM_SOURCES.index("email")) & no_email] = -1
    utm[(utm == UTM_SOURCES.index("sms")) & no_sms] = -1
    utm[sessions["is_bot"].to_numpy()] = -1
    sessions["utm"] = utm


def _session_intent(
    rng: np.random.Generator, sessions: pd.DataFrame, users: dict, prod: dict
) -> None:
    """Focus category, add-to-cart and checkout propensity, number of events of each kind."""
    n = len(sessions)
    user = sessions["user_idx"].to_numpy()
    logged = user >= 0
    safe = np.maximum(user, 0)
    cat_global = np.bincount(prod["cat"], weights=prod["weight"], minlength=N_CAT)
    cat_cdf = np.cumsum(cat_global / cat_global.sum())
    global_cat = np.minimum(np.searchsorted(cat_cdf, rng.random(n), side="right"), N_CAT - 1)
    user_cat = _RowSampler(users["cat_aff"]).sample(safe, rng.random(n))
    sessions["focus_cat"] = np.where(logged, user_cat, global_cat)
    prospect = logged & (users["trajectory"][safe] == PROSPECT)
    promo = sessions["promo"].to_numpy()
    p_atc = np.where(logged, 0.022 * users["buy_propensity"][safe], 0.012)
    p_atc = p_atc * np.where(promo, 1.5, 1.0) * np.where(prospect, 0.6, 1.0)
    sessions["p_atc"] = p_atc
    sessions["buyer"] = logged & ~prospect
    p_checkout = np.where(logged & ~prospect, 0.7, np.where(logged, 0.4, 0.25))
    sessions["p_checkout"] = np.minimum(p_checkout * np.where(promo, 1.15, 1.0), 0.95)
    bot = sessions["is_bot"].to_numpy()
    sessions["n_landing"] = (~bot).astype(int)
    sessions["n_page_views"] = np.where(bot, 0, rng.poisson(1.0, n))
    searches = (rng.random(n) < np.where(logged, 0.28, 0.2)) * (1 + (rng.random(n) < 0.15))
    sessions["n_search"] = np.where(bot, 0, searches)
    sessions["n_product_views"] = np.where(
        bot, rng.integers(100, 301, n), rng.geometric(1 / 5.0, n)
    )
    sessions["bot_rate"] = rng.uniform(1.3, 2.5, n)  # events per second


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def _query_vocab() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vocab: list[str] = []
    offsets, lengths = [], []
    for c, l1 in enumerate(CATEGORY_L1):
        l2s, _, _, _, extra = CATALOG[l1]
        words = [l1.lower(), *[s.lower() for s in l2s], *extra]
        makers = [BRANDS[b] for b in range(N_BRAND) if BRAND_CATEGORIES[b][0] == c]
        words += [f"{m.lower()} {s.lower()}" for m in makers[:3] for s in l2s[:2]]
        words += [m.lower() for m in makers]
        offsets.append(len(vocab))
        lengths.append(len(words))
        vocab += words
    assert not any(ch in w for w in vocab for ch in '"\\'), "queries are written without escaping"
    return np.array(vocab, dtype=object), np.array(offsets), np.array(lengths)


def _make_events(
    spec: SimulationSpec, sessions: pd.DataFrame, users: dict, prod: dict
) -> tuple[dict, dict]:
    """All events of all sessions, in session order, plus the carts (for orders)."""
    rng = _rng(spec, "events")
    n_s = len(sessions)
    s_user = sessions["user_idx"].to_numpy()
    logged = s_user >= 0
    bot = sessions["is_bot"].to_numpy()

    # product views: the session's focus category, the user's brands, or just what is popular
    n_prod = sessions["n_product_views"].to_numpy()
    pv_s = np.repeat(np.arange(n_s), n_prod)
    m = len(pv_s)
    r = rng.random(m)
    logged_e = logged[pv_s]
    brand_mode = logged_e & (r >= 0.62) & (r < 0.8)
    focus_mode = (r < 0.62) | (~logged_e & (r < 0.8))
    product = np.empty(m, dtype=np.int64)
    by_cat = _GroupedSampler(prod["cat"], prod["weight"], N_CAT)
    focus_cat = sessions["focus_cat"].to_numpy()[pv_s]
    product[focus_mode] = by_cat.sample(focus_cat[focus_mode], rng.random(int(focus_mode.sum())))
    by_brand = _GroupedSampler(prod["brand"], prod["weight"], N_BRAND)
    brand = _RowSampler(users["brand_aff"]).sample(
        s_user[pv_s[brand_mode]], rng.random(int(brand_mode.sum()))
    )
    product[brand_mode] = by_brand.sample(brand, rng.random(len(brand)))
    # most of a logged-in user's category and brand views follow their taste, where it exists
    taste_rng = _rng(spec, "event-tastes")
    tasteful = (focus_mode | brand_mode) & logged_e & (taste_rng.random(m) < TASTE_FOCUS)
    taste = _RowSampler(users["taste_aff"]).sample(np.maximum(s_user[pv_s], 0), taste_rng.random(m))
    pick = taste_rng.random(m)
    for mode, key, n_keys in ((focus_mode, "cat", N_CAT), (brand_mode, "brand", N_BRAND)):
        rows = np.flatnonzero(tasteful & mode)
        group = prod[key][product[rows]] * N_TASTE + taste[rows]
        sampler = _GroupedSampler(
            prod[key] * N_TASTE + prod["taste"], prod["weight"] ** TASTE_POPULARITY, n_keys * N_TASTE
        )
        rows, group = rows[sampler.has_items[group]], group[sampler.has_items[group]]
        product[rows] = sampler.sample(group, pick[rows])
    other = ~focus_mode & ~brand_mode
    overall = _GroupedSampler(np.zeros(len(prod["weight"]), int), prod["weight"], 1)
    product[other] = overall.sample(np.zeros(int(other.sum()), int), rng.random(int(other.sum())))
    revisit = _revisits(taste_rng, s_user[pv_s], logged_e, product)
    active = np.flatnonzero(prod["weight"] > 0)
    bot_e = bot[pv_s]
    product[bot_e] = active[rng.integers(0, len(active), int(bot_e.sum()))]
    pos = 0.05 + 0.92 * rng.random(m)

    # follow-ups of a product view: favourite, add to cart (interest-driven), later removal
    favorite = ~bot_e & (rng.random(m) < 0.02)
    affinity = np.where(
        logged_e, users["cat_aff"][np.maximum(s_user[pv_s], 0), prod["cat"][product]], 0.125
    )
    viewer = np.maximum(s_user[pv_s], 0)
    taste_of = users["taste_aff"]
    taste_fit = np.where(
        logged_e, taste_of[viewer, prod["taste"][product]] / taste_of.max(axis=1)[viewer], 0.5
    )  # 1 for the user's favourite taste
    taste_boost = TASTE_CART_FLOOR + (2.0 - TASTE_CART_FLOOR) * taste_fit**2
    p_atc = sessions["p_atc"].to_numpy()[pv_s] * (0.55 + 3.0 * affinity) * taste_boost
    p_atc = np.where(revisit, p_atc * REVISIT_CART_BOOST, p_atc)
    atc = ~bot_e & (rng.random(m) < p_atc)
    quantity = rng.choice(np.array([1, 2, 3]), size=m, p=[0.82, 0.13, 0.05])
    removed = atc & (rng.random(m) < 0.12)
    remove_pos = pos + 3e-6 + (0.985 - pos) * rng.random(m)
    kept = np.bincount(pv_s[atc & ~removed], minlength=n_s)
    checkout = (kept > 0) & (rng.random(n_s) < sessions["p_checkout"].to_numpy())

    # other events
    land_s = np.flatnonzero(sessions["n_landing"].to_numpy())
    page_s = np.repeat(np.arange(n_s), sessions["n_page_views"].to_numpy())
    search_s = np.repeat(np.arange(n_s), sessions["n_search"].to_numpy())
    vocab, offsets, lengths = _query_vocab()
    focus = sessions["focus_cat"].to_numpy()[search_s]
    query_idx = offsets[focus] + (rng.random(len(search_s)) * lengths[focus]).astype(int)
    checkout_s = np.flatnonzero(checkout)
    atc_i, rem_i, fav_i = np.flatnonzero(atc), np.flatnonzero(removed), np.flatnonzero(favorite)

    parts = [
        # (session, type, position, product, query, index of the product view)
        (land_s, PAGE_VIEW, np.zeros(len(land_s)), -1, -1, -1),
        (page_s, PAGE_VIEW, 0.02 + 0.96 * rng.random(len(page_s)), -1, -1, -1),
        (search_s, SEARCH, 0.01 + 0.6 * rng.random(len(search_s)), -1, query_idx, -1),
        (pv_s, PRODUCT_VIEW, pos, product, -1, np.arange(m)),
        (pv_s[fav_i], FAVORITE, pos[fav_i] + 1e-6, product[fav_i], -1, fav_i),
        (pv_s[atc_i], ADD_TO_CART, pos[atc_i] + 2e-6, product[atc_i], -1, atc_i),
        (pv_s[rem_i], REMOVE_FROM_CART, remove_pos[rem_i], product[rem_i], -1, rem_i),
        (checkout_s, CHECKOUT_START, np.full(len(checkout_s), 0.99), -1, -1, -1),
    ]
    sess = np.concatenate([p[0] for p in parts])
    etype = np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts])
    epos = np.concatenate([p[2] for p in parts])
    eprod = np.concatenate([np.broadcast_to(p[3], len(p[0])) for p in parts]).astype(np.int64)
    equery = np.concatenate([np.broadcast_to(p[4], len(p[0])) for p in parts]).astype(np.int64)
    eref = np.concatenate([np.broadcast_to(p[5], len(p[0])) for p in parts]).astype(np.int64)

    order = np.lexsort((epos, sess))
    sess, etype, eprod, equery, eref = (
        sess[order],
        etype[order],
        eprod[order],
        equery[order],
        eref[order],
    )

    # timing: dwell gaps, short gaps for clicks on the same product, machine gaps for bots
    n_e = len(sess)
    gap = np.clip(rng.lognormal(np.log(22), 0.9, n_e), 1, 600)
    quick = (etype == FAVORITE) | (etype == ADD_TO_CART)
    gap[quick] = np.clip(rng.lognormal(np.log(4), 0.5, int(quick.sum())), 1, 30)
    bot_ev = bot[sess]
    gap[bot_ev] = (
        rng.exponential(1.0, int(bot_ev.sum())) / sessions["bot_rate"].to_numpy()[sess[bot_ev]]
    )
    first = np.r_[True, sess[1:] != sess[:-1]] if n_e else np.zeros(0, bool)
    gap[first] = 0
    cum = np.cumsum(np.round(gap * 1000).astype(np.int64))
    since_start = cum - np.repeat(cum[first], np.diff(np.r_[np.flatnonzero(first), n_e]))
    event_ns = sessions["start_ns"].to_numpy()[sess] + since_start * NS_PER_MS

    events = {
        "sess": sess,
        "type": etype,
        "ns": event_ns,
        "product": eprod,
        "query": np.where(equery >= 0, vocab[np.maximum(equery, 0)], None),
        "price": np.where(eprod >= 0, _price_at(prod, np.maximum(eprod, 0), event_ns), np.nan),
    }
    is_atc = etype == ADD_TO_CART
    carts = {
        "sess": sess[is_atc],
        "product": eprod[is_atc],
        "quantity": quantity[eref[is_atc]],
        "ns": event_ns[is_atc],
        "removed": removed[eref[is_atc]],
    }
    is_checkout = etype == CHECKOUT_START
    carts["checkout_sess"] = sess[is_checkout]
    carts["checkout_ns"] = event_ns[is_checkout]
    return events, carts


# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------


def _revisits(
    rng: np.random.Generator, user: np.ndarray, logged: np.ndarray, product: np.ndarray
) -> np.ndarray:
    """Send a share (``REVISIT``) of logged-in product views back to a product the same user
    viewed earlier (``product`` is in session-start order); returns which views are revisits."""
    rows = np.flatnonzero(logged)
    by_user = rows[np.argsort(user[rows], kind="stable")]  # each user's views, oldest first
    u = user[by_user]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    position = np.arange(len(by_user)) - np.repeat(starts, np.diff(np.r_[starts, len(by_user)]))
    chosen = (position > 0) & (rng.random(len(by_user)) < REVISIT)
    earlier = (rng.random(len(by_user)) * position).astype(np.int64)  # 0 .. position - 1
    source = by_user[(np.arange(len(by_user)) - position + earlier)[chosen]]
    revisit = np.zeros(len(user), dtype=bool)
    product[by_user[chosen]] = product[source]
    revisit[by_user[chosen]] = True
    return revisit


def _make_orders(
    spec: SimulationSpec,
    cal: _Calendar,
    sessions: pd.DataFrame,
    carts: dict,
    users: dict,
    prod: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = _rng(spec, "orders")
    c_sess, c_ns = carts["checkout_sess"], carts["checkout_ns"]
    buyer = sessions["buyer"].to_numpy()[c_sess]
    promo = sessions["promo"].to_numpy()[c_sess]
    ordered = buyer & (rng.random(len(c_sess)) < np.where(promo, 0.72, 0.62))
    o_sess = c_sess[ordered]
    created = _ms(c_ns[ordered] + rng.uniform(20, 240, len(o_sess)) * NS_PER_S)
    rank = np.lexsort((o_sess, created))
    o_sess, created = o_sess[rank], created[rank]
    n = len(o_sess)
    order_id = ORDER_ID_BASE + 1 + np.arange(n)
    sess_to_order = np.full(len(sessions), -1)
    sess_to_order[o_sess] = np.arange(n)

    # items: what is still in the cart, one line per product in the order it was added
    keep = (sess_to_order[carts["sess"]] >= 0) & ~carts["removed"]
    items = pd.DataFrame(
        {
            "o": sess_to_order[carts["sess"][keep]],
            "product": carts["product"][keep],
            "quantity": carts["quantity"][keep],
            "ns": carts["ns"][keep],
        }
    )
    items = items.groupby(["o", "product"], sort=False, as_index=False).agg(
        quantity=("quantity", "sum"), ns=("ns", "min")
    )
    items = items.sort_values(["o", "ns", "product"], kind="stable", ignore_index=True)
    items["line_no"] = items.groupby("o").cumcount() + 1
    o_idx = items["o"].to_numpy()
    unit_price = _price_at(prod, items["product"].to_numpy(), created[o_idx])
    quantity = items["quantity"].to_numpy()
    subtotal = np.round(np.bincount(o_idx, weights=quantity * unit_price, minlength=n), 2)
    big = subtotal[o_idx] > 90_000  # keep honest orders far below any "absurd amount" rule
    quantity = np.where(big, 1, quantity)
    subtotal = np.round(np.bincount(o_idx, weights=quantity * unit_price, minlength=n), 2)

    coupon, discount = _coupons(rng, cal, sessions, o_sess, created, subtotal, users)
    total = np.round(subtotal - discount, 2)
    history, final_status, paid = _status_history(rng, order_id, created)

    # source dirt: impossible totals, unknown products in items (distinct orders)
    dirt_rng = _rng(spec, "order-dirt")
    reported = total.copy()
    order_dirt = np.full(n, None, dtype=object)
    item_product = items["product"].to_numpy() + 1
    item_dirt = np.full(len(items), None, dtype=object)
    if spec.dirt_rate > 0 and n:
        k = min(n, max(1, round(n * spec.dirt_rate / 3)))
        chosen = dirt_rng.permutation(n)
        bad_amount, rest = chosen[:k], chosen[k:]
        negative = dirt_rng.random(k) < 0.5
        reported[bad_amount] = np.where(
            negative,
            -np.maximum(total[bad_amount], 1.0),
            np.round(dirt_rng.uniform(1.2e6, 9.9e6, k), 2),
        )
        order_dirt[bad_amount] = "invalid_amount"
        k_items = min(len(rest), max(1, round(len(items) * spec.dirt_rate / 3)))
        dirty_orders = rest[:k_items]
        lines_of = items.groupby("o").indices
        picked = [
            lines_of[o][dirt_rng.integers(0, len(lines_of[o]))]
            for o in dirty_orders
            if o in lines_of
        ]
        picked = np.array(sorted(picked), dtype=np.int64)
        item_product[picked] = UNKNOWN_PRODUCT_ID_BASE + dirt_rng.integers(1, 100_000, len(picked))
        item_dirt[picked] = "unknown_product_id"

    user_idx = sessions["user_idx"].to_numpy()[o_sess]
    channel = np.array(CHANNELS, dtype=object)[sessions["channel"].to_numpy()[o_sess]]
    orders = pd.DataFrame(
        {
            "order_id": order_id,
            "user_id": user_idx + 1,
            "session_id": sessions["session_id"].to_numpy()[o_sess],
            "created_at": _utc(created),
            "paid_at": _utc(paid),
            "channel": channel,
            "subtotal": subtotal,
            "discount_amount": discount,
            "total_amount": reported,
            "true_total_amount": total,
            "coupon_code": coupon,
            "final_status": np.array(ORDER_STATUSES, dtype=object)[final_status],
            "is_promo_day": sessions["promo"].to_numpy()[o_sess],
            "dirt_reason": order_dirt,
        }
    )
    order_items = pd.DataFrame(
        {
            "order_id": order_id[o_idx],
            "line_no": items["line_no"].to_numpy(),
            "product_id": item_product,
            "quantity": quantity,
            "unit_price": unit_price,
            "true_product_id": items["product"].to_numpy() + 1,
            "dirt_reason": item_dirt,
        }
    )
    return orders, order_items, history


def _coupons(
    rng: np.random.Generator,
    cal: _Calendar,
    sessions: pd.DataFrame,
    o_sess: np.ndarray,
    created: np.ndarray,
    subtotal: np.ndarray,
    users: dict,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(o_sess)
    promo = sessions["promo"].to_numpy()[o_sess]
    day = sessions["day"].to_numpy()[o_sess]
    user = sessions["user_idx"].to_numpy()[o_sess]
    fresh = created - users["signup"][user] < NEW_PHASE_DAYS * NS_PER_DAY
    has = rng.random(n) < np.where(promo, 0.45, 0.12)
    r = rng.random(n)
    code = np.full(n, None, dtype=object)
    discount = np.zeros(n)
    promo_code = has & promo & (r < 0.7)
    for i in np.flatnonzero(promo_code):  # only promo-day orders; small
        code[i] = f"PROMO{cal.days[day[i]]:%m%d}"
    discount = np.where(promo_code, np.minimum(np.round(0.15 * subtotal, 2), 200.0), discount)
    rest = has & ~promo_code
    welcome = rest & fresh & (r > 0.7)
    minus = rest & ~welcome & (r > 0.45) & (subtotal >= 199)
    save = rest & ~welcome & ~minus
    code[welcome], code[minus], code[save] = "WELCOME15", "MINUS20", "SAVE10"
    discount = np.where(welcome, np.minimum(15.0, subtotal), discount)
    discount = np.where(minus, 20.0, discount)
    discount = np.where(save, np.minimum(np.round(0.10 * subtotal, 2), 50.0), discount)
    return code, np.round(discount, 2)


def _status_history(
    rng: np.random.Generator, order_id: np.ndarray, created: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """created -> paid (minutes) -> shipped (1-2 days) -> completed (3-7 days) [-> refunded],
    or cancelled (unpaid after 30-60 minutes, or paid but cancelled before shipping)."""
    n = len(created)
    unpaid = rng.random(n) < 0.06
    paid = _ms(created + np.clip(rng.lognormal(np.log(90), 0.8, n), 10, 1800) * NS_PER_S)
    cancel_unpaid = _ms(created + rng.uniform(30, 60, n) * NS_PER_MIN)
    cancel_paid = ~unpaid & (rng.random(n) < 0.04)
    cancel_paid_at = _ms(paid + rng.uniform(10 / 60, 12, n) * NS_PER_HOUR)
    shipped = ~unpaid & ~cancel_paid
    shipped_at = _ms(paid + rng.uniform(18, 48, n) * NS_PER_HOUR)
    completed_at = _ms(shipped_at + rng.uniform(3, 7, n) * NS_PER_DAY)
    refunded = shipped & (rng.random(n) < 0.03)
    refunded_at = _ms(completed_at + rng.uniform(1, 10, n) * NS_PER_DAY)
    steps = [
        (np.ones(n, bool), CREATED, created),
        (~unpaid, PAID, paid),
        (unpaid, CANCELLED, cancel_unpaid),
        (cancel_paid, CANCELLED, cancel_paid_at),
        (shipped, SHIPPED, shipped_at),
        (shipped, COMPLETED, completed_at),
        (refunded, REFUNDED, refunded_at),
    ]
    o = np.concatenate([np.flatnonzero(mask) for mask, _, _ in steps])
    status = np.concatenate([np.full(int(mask.sum()), code) for mask, code, _ in steps])
    at = np.concatenate([ts[mask] for mask, _, ts in steps])
    order = np.lexsort((status, at, o))
    o, status, at = o[order], status[order], at[order]
    history = pd.DataFrame(
        {
            "order_id": order_id[o],
            "status": np.array(ORDER_STATUSES, dtype=object)[status],
            "changed_at": _utc(at),
        }
    )
    last = np.r_[o[1:] != o[:-1], True] if len(o) else np.zeros(0, bool)
    final = np.empty(n, dtype=np.int64)
    final[o[last]] = status[last]
    return history, final, np.where(unpaid, NO_TIME, paid)


# --------------------------------------------------------------------------------------------
# Landing plan: write times, files, dirt
# --------------------------------------------------------------------------------------------


def _plan_landing(
    spec: SimulationSpec, cal: _Calendar, ev: dict, channel: np.ndarray, is_bot: np.ndarray
) -> tuple[pd.DataFrame, dict]:
    """Decide for every event when and into which file it is written, and every dirty line."""
    rng = _rng(spec, "landing")
    n = len(ev["ns"])
    messy = spec.dirt_rate > 0
    delay = np.clip(rng.lognormal(np.log(25), 1.1, n), 1, 3000) * NS_PER_S
    write_ns = _ms(ev["ns"] + delay)
    group = np.zeros(n, dtype=np.int64)

    if messy and n:  # late files: an app upload batch of one hour arrives 1-2 days later
        event_hour = ev["ns"] // NS_PER_HOUR
        hours = np.unique(event_hour)
        k = max(1, round(len(hours) * min(0.5, 0.5 * spec.dirt_rate)))
        chosen = np.sort(rng.choice(hours, size=min(k, len(hours)), replace=False))
        upload = _ms(chosen * NS_PER_HOUR + rng.uniform(25, 47, len(chosen)) * NS_PER_HOUR)
        batch = np.searchsorted(chosen, event_hour)
        in_batch = (
            (batch < len(chosen))
            & (chosen[np.minimum(batch, len(chosen) - 1)] == event_hour)
            & (channel != 0)
            & ~is_bot
        )
        write_ns[in_batch] = upload[batch[in_batch]]
        group[in_batch] = 3 + batch[in_batch]

    write_hour = write_ns // NS_PER_HOUR
    hours, inverse = np.unique(write_hour, return_inverse=True)
    parts = rng.choice(np.array([1, 2, 3]), size=len(hours), p=[0.55, 0.3, 0.15])
    normal = group == 0
    group[normal] = (rng.random(n) * parts[inverse])[normal].astype(np.int64)
    file_code = write_hour * (1 << 24) + group
    codes, file_of_event = np.unique(file_code, return_inverse=True)
    file_hour = codes >> 24
    _, first_of_hour, hour_inv = np.unique(file_hour, return_index=True, return_inverse=True)
    part_no = np.arange(len(codes)) - first_of_hour[hour_inv]
    hour_start = file_hour * NS_PER_HOUR
    stamp = pd.DatetimeIndex(hour_start.view("datetime64[ns]"))
    keys = [
        f"events/date={t:%Y-%m-%d}/hour={t:%H}/events-{t:%Y%m%d%H}-{p}.jsonl.gz"
        for t, p in zip(stamp, part_no, strict=True)
    ]
    logical = _local_days(hour_start, cal.tz)
    files = pd.DataFrame(
        {
            "file_idx": np.arange(len(codes)),
            "key": keys,
            "hour_start": _utc(hour_start),
            "write_date": stamp.date,
            "local_logical_date": pd.DatetimeIndex(logical).date,
            "part": part_no,
            "is_late_batch": (codes & ((1 << 24) - 1)) >= 3,
        }
    )

    kind = np.zeros(n, dtype=np.int8)
    dup_of = np.zeros(0, dtype=np.int64)
    if messy and n:
        kind, dup_of = _assign_dirt(rng, spec.dirt_rate, ev, is_bot)
    ts_style = np.zeros(n, dtype=np.int8)
    extra = np.zeros(n, dtype=np.int8)
    if messy:
        other = rng.random(n) < min(0.3, spec.dirt_rate * 4 / 3)
        ts_style[other] = rng.choice(
            np.arange(1, 5), size=int(other.sum()), p=[0.4, 0.2, 0.25, 0.15]
        )
        has_extra = rng.random(n) < min(0.3, spec.dirt_rate * 2 / 3)
        extra[has_extra] = np.where(
            channel[has_extra] == 1, 1, 2 + (rng.random(int(has_extra.sum())) < 0.5)
        )
    variant = rng.integers(0, 1 << 30, n)

    # duplicates: the same file, or a later one (client retries)
    n_files = len(codes)
    step = rng.choice(np.array([0, 0, 0, 1, 2, 3]), size=len(dup_of))
    dup_file = np.minimum(file_of_event[dup_of] + step, n_files - 1)
    same = dup_file == file_of_event[dup_of]
    dup_key = np.where(same, write_ns[dup_of] + 1, hour_start[dup_file] + NS_PER_HOUR - 1)

    event_row = np.r_[np.arange(n), dup_of]
    lines = pd.DataFrame(
        {
            "event_row": event_row,
            "file_idx": np.r_[file_of_event, dup_file].astype(np.int64),
            "kind": np.r_[kind, np.full(len(dup_of), DUPLICATE, np.int8)],
            "order_key": np.r_[write_ns, dup_key],
            "ts_style": ts_style[event_row],
            "extra": extra[event_row],
            "variant": variant[event_row],
            "session_idx": ev["sess"][event_row],
        }
    )
    order = np.lexsort(
        (np.arange(len(lines)), lines["order_key"].to_numpy(), lines["file_idx"].to_numpy())
    )
    lines = lines.iloc[order].reset_index(drop=True)
    plan = {"write_ns": write_ns, "file_of_event": file_of_event, "kind": kind, "files": files}
    return lines, plan


def _assign_dirt(
    rng: np.random.Generator, rate: float, ev: dict, is_bot: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One defect per chosen base event; duplicates copy other, valid events."""
    n = len(ev["ns"])
    kind = np.zeros(n, dtype=np.int8)
    eligible = np.flatnonzero(~is_bot)
    perm = rng.permutation(eligible)
    per_kind = rate / len(REJECT_KINDS)
    with_product = perm[ev["product"][perm] >= 0]
    k = int(rng.binomial(len(with_product), per_kind))
    kind[with_product[:k]] = UNKNOWN_PRODUCT
    rest = perm[kind[perm] == VALID]
    start = 0
    for code in (MALFORMED, MISSING, WRONG_TYPE, BAD_TS, BAD_ENUM):
        k = int(rng.binomial(len(eligible), per_kind))
        kind[rest[start : start + k]] = code
        start += k
    k = int(rng.binomial(len(eligible), rate))
    dup_of = np.sort(rest[start : start + k])
    return kind, dup_of


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
        truth[f"n_{name}"] = np.bincount(f, weights=kind == code, minlength=n_files).astype(
            np.int64
        )
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


# --------------------------------------------------------------------------------------------
# generate()
# --------------------------------------------------------------------------------------------


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

    user_versions = users["versions"]
    final_users = user_versions.drop_duplicates("user_id", keep="last").reset_index(drop=True)
    product_versions = prod["versions"]
    final_products = product_versions.drop_duplicates("product_id", keep="last").reset_index(
        drop=True
    )
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
        files=files,
        lines=lines,
        promo_days=promo_days,
    )


def published_view(world: World) -> dict[str, pd.DataFrame]:
    """The world as the cleaned warehouse would hold it, for model studies without the
    pipeline: true values only (no dirt, no bots, logged-in events), final order statuses.
    ``events``: user_id, product_id, event_type, event_at (UTC); ``orders``: order_id, user_id,
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
    return {"events": events, "orders": orders, "order_items": order_items, "products": world.products.copy()}


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
# Rendering landing lines
# --------------------------------------------------------------------------------------------


def _quoted(values: np.ndarray) -> pa.Array:
    """JSON text of nullable strings (our strings never need escaping)."""
    arr = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    return pc.fill_null(pc.binary_join_element_wise('"', arr, '"', ""), "null")


def _number(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(values, pa.string()), "null")


def _enum_text(column: pd.Series, rows: np.ndarray) -> pa.Array:
    """JSON text of a categorical column: quoted category, or null."""
    array = column.array
    texts = pa.array([f'"{c}"' for c in array.categories] + ["null"], pa.string())
    codes = array.codes[rows]
    return texts.take(pa.array(np.where(codes < 0, len(texts) - 1, codes)))


def _timestamps(event_ns: np.ndarray, style: np.ndarray, tz: str) -> pa.Array:
    """ISO-8601 text with an offset: the shop's offset, or (style > 0) Z/+00:00/other offsets."""
    wall = _wall_ns(event_ns, tz)
    shift = wall - event_ns
    offset_min = shift // NS_PER_MIN
    suffixes = []
    code = np.zeros(len(event_ns), dtype=np.int64)
    for minutes in np.unique(offset_min):
        sign = "+" if minutes >= 0 else "-"
        code[offset_min == minutes] = len(suffixes)
        suffixes.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    for style_code, (minutes, text) in enumerate(OTHER_OFFSETS, start=1):
        mask = style == style_code
        shift[mask] = minutes * NS_PER_MIN
        code[mask] = len(suffixes)
        suffixes.append(text)
    local = (event_ns + shift).view("datetime64[ns]").astype("datetime64[ms]")
    text = pa.array(np.datetime_as_string(local, unit="ms"), pa.string())
    suffix = pa.array(suffixes, pa.string()).take(pa.array(code))
    return pc.binary_join_element_wise(text, suffix, "")


def _session_segments(ev: pd.DataFrame, rows: np.ndarray, sess: np.ndarray) -> tuple[pa.Array, ...]:
    """Per line, the parts that are constant within a session, rendered once per session."""
    _, first, inverse = np.unique(sess, return_index=True, return_inverse=True)
    srow = rows[first]
    who = pc.binary_join_element_wise(
        _number(pa.array(ev["user_id"].array[srow], type=pa.int64())),
        ',"anonymous_id":"', pa.array(ev["anonymous_id"].to_numpy()[srow], pa.string()),
        '","session_id":"', pa.array(ev["session_id"].to_numpy()[srow], pa.string()),
        '"',
        "",
    )  # fmt: skip
    where = pc.binary_join_element_wise(
        ',"channel":', _enum_text(ev["channel"], srow),
        ',"device":', _enum_text(ev["device"], srow),
        ',"utm_source":', _enum_text(ev["utm_source"], srow),
        "",
    )  # fmt: skip
    take = pa.array(inverse)
    return who.take(take), where.take(take)


EXTRA_FIELDS = ("}\n", ',"app_version":"5.2.1"}\n', ',"experiment":"a"}\n', ',"experiment":"b"}\n')


def _render_lines(world: World, lines: pd.DataFrame) -> pa.Array:
    """The JSON text of landing lines (each ending in a newline), in order, dirt applied."""
    ev = world.events
    rows = lines["event_row"].to_numpy()
    who, where = _session_segments(ev, rows, lines["session_idx"].to_numpy())
    ts = _timestamps(
        ev["event_ts"].array.asi8[rows], lines["ts_style"].to_numpy(), world.spec.timezone
    )
    product = pa.array(ev["product_id"].array[rows], type=pa.int64())
    price = pa.array(ev["price"].to_numpy()[rows], type=pa.float64(), from_pandas=True)
    tail = pa.array(EXTRA_FIELDS, pa.string()).take(pa.array(lines["extra"].to_numpy()))
    text = pc.binary_join_element_wise(
        '{"event_id":"', pa.array(ev["event_id"].to_numpy()[rows], pa.string()),
        '","event_type":', _enum_text(ev["event_type"], rows),
        ',"event_ts":"', ts,
        '","user_id":', who,
        ',"product_id":', _number(product),
        ',"query":', _quoted(ev["query"].to_numpy()[rows]),
        where,
        ',"price":', _number(price),
        tail,
        "",
    )  # fmt: skip
    kind = lines["kind"].to_numpy()
    dirty = kind >= MALFORMED
    if dirty.any():
        variant = lines["variant"].to_numpy()[dirty]
        originals = text.filter(pa.array(dirty)).to_pylist()
        corrupted = [
            _corrupt(line[:-1], int(k), int(v)) + "\n"
            for line, k, v in zip(originals, kind[dirty], variant, strict=True)
        ]
        text = pc.replace_with_mask(text, pa.array(dirty), pa.array(corrupted, pa.string()))
    return text


def _corrupt(line: str, kind: int, variant: int) -> str:
    """Apply exactly one defect of ``kind`` to a valid JSON line."""
    if kind == MALFORMED:
        if variant % 2:
            return line[:-1] + ",}"  # trailing comma
        return line[: 10 + variant % max(1, len(line) - 12)]  # truncated
    obj: dict[str, Any] = json.loads(line)
    if kind == MISSING:
        name = REQUIRED_FIELDS[variant % len(REQUIRED_FIELDS)]
        if (variant // len(REQUIRED_FIELDS)) % 2:
            obj[name] = None
        else:
            del obj[name]
    elif kind == WRONG_TYPE:
        if obj.get("price") is not None and variant % 2 == 0:
            obj["price"] = BAD_PRICES[(variant // 2) % len(BAD_PRICES)]
        else:
            obj["user_id"] = BAD_USER_IDS[(variant // 2) % len(BAD_USER_IDS)]
    elif kind == BAD_TS:
        obj["event_ts"] = BAD_TIMESTAMPS[variant % len(BAD_TIMESTAMPS)]
    elif kind == BAD_ENUM:
        if variant % 2:
            obj["channel"] = BAD_CHANNELS[(variant // 2) % len(BAD_CHANNELS)]
        else:
            obj["event_type"] = BAD_EVENT_TYPES[(variant // 2) % len(BAD_EVENT_TYPES)]
    elif kind == UNKNOWN_PRODUCT:
        obj["product_id"] = UNKNOWN_PRODUCT_ID_BASE + variant % 100_000
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# materialize(): landing files
# --------------------------------------------------------------------------------------------


def _end_of_day_ns(as_of: date, tz: str) -> int:
    return int(_local_midnights_ns([as_of + timedelta(days=1)], tz)[0])


def _write_landing(world: World, landing: Storage, end_ns: int) -> dict[str, int]:
    """Write the landing files complete by ``end_ns`` that the storage does not hold yet."""
    files = world.files
    hour_end = files["hour_start"].array.asi8 + NS_PER_HOUR
    known = files[hour_end <= end_ns]
    existing = {info.key for info in landing.list("events/")}
    todo = known[~known["key"].isin(existing)]
    summary = {
        "files_known": len(known),
        "files_written": 0,
        "lines_written": 0,
        "bytes_written": 0,
    }
    if todo.empty:
        return summary
    wanted = np.zeros(len(files), dtype=bool)
    wanted[todo["file_idx"].to_numpy()] = True
    lines = world.lines
    selected = lines[wanted[lines["file_idx"].to_numpy()]]
    f = selected["file_idx"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, f[1:] != f[:-1], True])  # file starts, then the end
    keys = files["key"].to_numpy()

    def put(key: str, text: pa.Buffer) -> int:
        data = gzip.compress(memoryview(text), compresslevel=6, mtime=0)
        landing.write_bytes(key, data)
        return len(data)

    futures = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        first = 0
        while first < len(bounds) - 1:  # chunks of whole files, ~200k lines each
            last = int(np.searchsorted(bounds, bounds[first] + 200_000, side="right")) - 1
            last = min(max(last, first + 1), len(bounds) - 1)
            lo, hi = bounds[first], bounds[last]
            text = _render_lines(world, selected.iloc[lo:hi])
            offsets = pa.array(bounds[first : last + 1] - lo, pa.int32())
            per_file = pc.binary_join(pa.ListArray.from_arrays(offsets, text), "")
            for i in range(last - first):
                key = keys[f[bounds[first + i]]]
                futures.append(pool.submit(put, key, per_file[i].as_buffer()))
            summary["lines_written"] += int(hi - lo)
            first = last
        summary["bytes_written"] = sum(future.result() for future in futures)
    summary["files_written"] = len(futures)
    return summary


# --------------------------------------------------------------------------------------------
# materialize(): source database
# --------------------------------------------------------------------------------------------

_METADATA = sa.MetaData()
USERS_TABLE = sa.Table(
    "users",
    _METADATA,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("signup_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gender", sa.String(1)),
    sa.Column("birth_year", sa.Integer),
    sa.Column("region", sa.String(64)),
    sa.Column("city", sa.String(64)),
    sa.Column("email", sa.String(256)),
    sa.Column("phone", sa.String(32)),
    sa.Column("consent_email", sa.Boolean),
    sa.Column("consent_sms", sa.Boolean),
    sa.Column("consent_push", sa.Boolean),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
PRODUCTS_TABLE = sa.Table(
    "products",
    _METADATA,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(256)),
    sa.Column("category_l1", sa.String(64)),
    sa.Column("category_l2", sa.String(64)),
    sa.Column("brand", sa.String(64)),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("is_active", sa.Boolean),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ORDERS_TABLE = sa.Table(
    "orders",
    _METADATA,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("paid_at", sa.DateTime(timezone=True)),
    sa.Column("total_amount", sa.Numeric(12, 2)),
    sa.Column("discount_amount", sa.Numeric(12, 2)),
    sa.Column("coupon_code", sa.String(32)),
    sa.Column("channel", sa.String(16)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
ORDER_ITEMS_TABLE = sa.Table(
    "order_items",
    _METADATA,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.BigInteger),
    sa.Column("quantity", sa.Integer),
    sa.Column("unit_price", sa.Numeric(12, 2)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
SOURCE_TABLES: dict[str, tuple[sa.Table, tuple[str, ...]]] = {
    "users": (USERS_TABLE, ("user_id",)),
    "products": (PRODUCTS_TABLE, ("product_id",)),
    "orders": (ORDERS_TABLE, ("order_id",)),
    "order_items": (ORDER_ITEMS_TABLE, ("order_id", "line_no")),
}


def source_state(world: World, as_of: date) -> dict[str, pd.DataFrame]:
    """The source tables as the shop's database holds them at the end of local day ``as_of``."""
    return _source_state(world, _end_of_day_ns(as_of, world.spec.timezone))


def _latest_before(versions: pd.DataFrame, key: str, end: pd.Timestamp) -> pd.DataFrame:
    known = versions[versions["updated_at"] < end]
    return known.drop_duplicates(key, keep="last").reset_index(drop=True)


def _source_state(world: World, end_ns: int) -> dict[str, pd.DataFrame]:
    end = pd.Timestamp(end_ns, unit="ns", tz="UTC")
    users = _latest_before(world.user_versions, "user_id", end)
    products = _latest_before(world.product_versions, "product_id", end)
    history = world.order_status_history
    seen = history[history["changed_at"] < end]
    last = seen.drop_duplicates("order_id", keep="last").set_index("order_id")
    paid = seen[seen["status"] == "paid"].set_index("order_id")["changed_at"]
    orders = world.orders[world.orders["created_at"] < end].copy()
    orders["status"] = orders["order_id"].map(last["status"])
    orders["updated_at"] = orders["order_id"].map(last["changed_at"])
    orders["paid_at"] = orders["order_id"].map(paid)
    created = orders.set_index("order_id")["created_at"]
    items = world.order_items[world.order_items["order_id"].isin(created.index)].copy()
    items["updated_at"] = items["order_id"].map(created)
    return {
        name: frame[[c.name for c in table.columns]].reset_index(drop=True)
        for name, (table, _), frame in zip(
            SOURCE_TABLES, SOURCE_TABLES.values(), (users, products, orders, items), strict=True
        )
    }


def _python_values(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return [None if v is pd.NaT else v.to_pydatetime() for v in series]
    if pd.api.types.is_bool_dtype(series.dtype) and not isinstance(series.dtype, pd.BooleanDtype):
        return series.tolist()
    if pd.api.types.is_float_dtype(series.dtype):
        return [None if np.isnan(v) else round(v, 2) for v in series.tolist()]
    return [
        None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
        for v in series.tolist()
    ]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    values = [_python_values(frame[c]) for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def _updated_ns(values: pd.Series) -> np.ndarray:
    if values.empty:
        return np.zeros(0, dtype=np.int64)
    return pd.to_datetime(values, utc=True).dt.as_unit("ns").array.asi8


def _sync_table(
    conn: sa.Connection, table: sa.Table, keys: tuple[str, ...], desired: pd.DataFrame
) -> tuple[int, int]:
    """Make ``table`` hold exactly ``desired``: rows compared by key and ``updated_at``."""
    result = conn.execute(sa.select(*[table.c[k] for k in keys], table.c.updated_at)).all()
    existing = pd.DataFrame(result, columns=[*keys, "updated_at"])
    old = existing[list(keys)].astype(np.int64)
    old["_old"] = _updated_ns(existing["updated_at"])
    new = desired[list(keys)].astype(np.int64)
    new["_new"] = desired["updated_at"].array.asi8
    both = new.merge(old, on=list(keys), how="outer", indicator=True)
    changed = (both["_merge"] == "both") & (both["_new"] != both["_old"])
    stale = both[(both["_merge"] == "right_only") | changed]
    fresh = both[(both["_merge"] == "left_only") | changed]
    if not stale.empty:
        condition = sa.and_(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
        params = [
            {f"k_{k}": int(v) for k, v in zip(keys, row, strict=True)}
            for row in stale[list(keys)].itertuples(index=False)
        ]
        conn.execute(table.delete().where(condition), params)
    if not fresh.empty:
        rows = desired.merge(fresh[list(keys)], on=list(keys), how="inner")
        records = _records(rows)
        for start in range(0, len(records), 5000):
            conn.execute(table.insert(), records[start : start + 5000])
    return len(fresh), int((both["_merge"] == "right_only").sum())


def _ensure_sqlite_dir(url: str) -> None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _sync_source(world: World, source_url: str, end_ns: int) -> dict[str, dict[str, int]]:
    _ensure_sqlite_dir(source_url)
    state = _source_state(world, end_ns)
    engine = sa.create_engine(source_url)
    upserted: dict[str, int] = {}
    deleted: dict[str, int] = {}
    try:
        _METADATA.create_all(engine)
        with engine.begin() as conn:
            for name, (table, keys) in SOURCE_TABLES.items():
                upserted[name], deleted[name] = _sync_table(conn, table, keys, state[name])
    finally:
        engine.dispose()
    return {"rows_upserted": upserted, "rows_deleted": deleted}


# --------------------------------------------------------------------------------------------
# materialize(): truth
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
    dirty_items = dirty_items[dirty_items["order_id"].isin(orders["order_id"])].reset_index(
        drop=True
    )
    return {
        "landing_files": landing,
        "events_daily": daily,
        "users": users,
        "lifecycle_daily": lifecycle,
        "orders": orders_truth,
        "order_items_dirty": dirty_items,
        "products": truth["products"],
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
    }
    written = []
    for name, frame in tables.items():
        storage.write_bytes(f"{name}.parquet", _parquet_bytes(frame, dates.get(name, ())))
        written.append(f"{name}.parquet")
    meta = {
        "spec": {
            k: str(v) if isinstance(v, date) else v
            for k, v in dataclasses.asdict(world.spec).items()
        },
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


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def materialize(
    world: World,
    landing: Storage,
    source_url: str,
    as_of: date,
    truth_dir: str | Path | Storage,
) -> dict:
    """Write everything known by the end of local day ``as_of``; idempotent and incremental.

    Landing files whose write hour ended by then and that are not in ``landing`` yet are
    written (existing ones are left alone). The source DB tables are created if missing and
    synchronised to their state at the end of ``as_of``. The truth tables (Parquet) are
    rewritten under ``truth_dir`` (a local path, ``s3://`` URI or a Storage). Returns a summary.
    """
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


__all__ = [
    "EVENT_TYPES",
    "LINE_KINDS",
    "LIFECYCLE_STATES",
    "SimulationSpec",
    "World",
    "generate",
    "materialize",
    "simulate",
    "source_state",
    "truth_as_of",
]
