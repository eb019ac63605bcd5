"""What the simulated shop is made of: the shared vocabulary (event, line-kind, lifecycle and
order status codes, the catalogue's categories and brands, the latent tastes), the public
:class:`SimulationSpec` and :class:`World`, the small numeric helpers every part of the
simulation uses (independent random streams, millisecond instants, UTC and local days, hex ids,
weighted samplers) and the calendar (promo days, weekly and daily traffic). It imports nothing
else of the simulator."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from jobs.platform.interface import EVENT_FIELDS, REQUIRED_EVENT_FIELDS

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

PAGE_VIEW, SEARCH, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, FAVORITE, CHECKOUT_START = range(7)
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
    (b % N_CAT, (b * 3 + 1) % N_CAT) if b % 3 == 0 and (b * 3 + 1) % N_CAT != b % N_CAT else (b % N_CAT,)
    for b in range(N_BRAND)
)

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
    # true effect of each campaign (config/campaigns.yaml ids): the chance that a contacted
    # customer places one extra order (jobs.simulator.responses); campaigns not listed have none
    campaign_uplift: tuple[tuple[str, float], ...] = (
        ("cart_abandonment", 0.15),
        ("winback_high_value", 0.08),
        ("vip_early_access", 0.0),
        ("reactivation_churn_risk", 0.05),
        ("repurchase_reminder", 0.10),
        ("cross_sell", 0.0),
        ("onboarding_new", 0.06),
        ("weekly_newsletter", 0.04),
    )


@dataclass(repr=False)
class World:
    """Everything :func:`generate` made; pure data, nothing written.

    ``users``/``products`` hold the source-table rows at the end of the simulated period
    (``user_versions``/``product_versions`` hold every version with its ``updated_at``);
    ``orders``/``order_items`` the rows as the source DB reports them (dirt included) plus
    truth columns; ``suppressions`` the suppression list (one row per suppressed user and
    channel, with its ``updated_at``); ``events`` one row per logical event (times UTC) with
    the landing plan (``write_ts``, ``file_key``, ``dirt``); ``files``/``lines`` the exact
    content plan of every landing file; ``truth`` the latent ground truth (see
    :func:`materialize`).
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
    suppressions: pd.DataFrame = field(default_factory=pd.DataFrame)
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


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------

HOUR_WEIGHTS = np.array(
    [0.9, 0.5, 0.3, 0.18, 0.12, 0.15, 0.3, 0.55, 0.85, 1.0, 1.1, 1.2,
     1.3, 1.2, 1.1, 1.1, 1.15, 1.25, 1.35, 1.6, 1.9, 2.1, 2.0, 1.5]
)  # fmt: skip
PROMO_HOUR_BOOST = {0: 4.0, 1: 2.5, 20: 1.3, 21: 1.4, 22: 1.4, 23: 1.3}
WEEKDAY_FACTOR = np.array([0.95, 0.93, 0.95, 0.98, 1.05, 1.2, 1.25])  # Monday first
FESTIVALS = ((6, 18), (11, 11), (12, 12))


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


def _end_of_day_ns(as_of: date, tz: str) -> int:
    return int(_local_midnights_ns([as_of + timedelta(days=1)], tz)[0])
