"""What people do in the shop: sessions (logged-in users following their visit rate,
anonymous visitors and bots, with channel, device and traffic source), the events of each
session (landing and page views, searches, product views steered by interests and tastes,
favourites, cart changes, checkout starts) and the orders placed at checkout, with coupons,
a status lifecycle and the source dirt of impossible totals and unknown products. A few
planted "bought together" pairs (:func:`planted_bundles`) give the baskets rules to find."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.platform.interface import EVENT_CHANNELS as CHANNELS
from jobs.platform.interface import ORDER_STATUSES
from jobs.simulator.catalogue import _price_at
from jobs.simulator.spec import (
    ADD_TO_CART,
    BRAND_CATEGORIES,
    BRANDS,
    CANCELLED,
    CATALOG,
    CATEGORY_L1,
    CHECKOUT_START,
    COMPLETED,
    CREATED,
    FAVORITE,
    N_BRAND,
    N_CAT,
    N_TASTE,
    NEW_PHASE_DAYS,
    NO_TIME,
    NS_PER_DAY,
    NS_PER_HOUR,
    NS_PER_MIN,
    NS_PER_MS,
    NS_PER_S,
    ORDER_ID_BASE,
    PAGE_VIEW,
    PAID,
    PRODUCT_VIEW,
    PROSPECT,
    REFUNDED,
    REMOVE_FROM_CART,
    REVISIT,
    REVISIT_CART_BOOST,
    SEARCH,
    SHIPPED,
    TASTE_CART_FLOOR,
    TASTE_FOCUS,
    TASTE_POPULARITY,
    UNKNOWN_PRODUCT_ID_BASE,
    UTM_SOURCES,
    SimulationSpec,
    _Calendar,
    _GroupedSampler,
    _hex_ids,
    _ms,
    _rng,
    _RowSampler,
    _times_in_days,
    _utc,
)

BUNDLES = 6  # planted "bought together" pairs
BUNDLE_ATTACH = 0.5  # chance that an order with a pair's first product also gets the second

# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------

# utm_source probabilities by channel over (null, *UTM_SOURCES)
UTM_BY_CHANNEL = np.array(
    [
        [0.40, 0.10, 0.22, 0.04, 0.06, 0.06, 0.02, 0.10],  # web
        [0.60, 0.00, 0.02, 0.08, 0.10, 0.05, 0.08, 0.07],  # app
        [0.35, 0.00, 0.00, 0.50, 0.05, 0.02, 0.05, 0.03],  # mini_program
    ]
)


def _make_sessions(spec: SimulationSpec, cal: _Calendar, users: dict, mult: np.ndarray, prod: dict) -> pd.DataFrame:
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


def _session_intent(rng: np.random.Generator, sessions: pd.DataFrame, users: dict, prod: dict) -> None:
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
    sessions["n_product_views"] = np.where(bot, rng.integers(100, 301, n), rng.geometric(1 / 5.0, n))
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


def _make_events(spec: SimulationSpec, sessions: pd.DataFrame, users: dict, prod: dict) -> tuple[dict, dict]:
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
    brand = _RowSampler(users["brand_aff"]).sample(s_user[pv_s[brand_mode]], rng.random(int(brand_mode.sum())))
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
            prod[key] * N_TASTE + prod["taste"],
            prod["weight"] ** TASTE_POPULARITY,
            n_keys * N_TASTE,
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
    affinity = np.where(logged_e, users["cat_aff"][np.maximum(s_user[pv_s], 0), prod["cat"][product]], 0.125)
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
    gap[bot_ev] = rng.exponential(1.0, int(bot_ev.sum())) / sessions["bot_rate"].to_numpy()[sess[bot_ev]]
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


def _revisits(rng: np.random.Generator, user: np.ndarray, logged: np.ndarray, product: np.ndarray) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------------------------


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
    items = _add_bundled(spec, prod, items)
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
        picked = [lines_of[o][dirt_rng.integers(0, len(lines_of[o]))] for o in dirty_orders if o in lines_of]
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


def planted_bundles(spec: SimulationSpec, prod: dict) -> pd.DataFrame:
    """The shop's "bought together" pairs (think phone and charger): the ``BUNDLES`` most
    popular active products, each with a consequent drawn from the other active products.
    Drawn from a stream of their own."""
    rng = _rng(spec, "bundles")
    active = np.flatnonzero(prod["weight"] > 0)
    k = min(BUNDLES, len(active) // 4)
    antecedent = active[np.argsort(-prod["popularity"][active], kind="stable")][:k]
    others = np.setdiff1d(active, antecedent)
    consequent = rng.choice(others, k, replace=False) if k else np.zeros(0, np.int64)
    return pd.DataFrame({"antecedent": antecedent, "consequent": consequent, "attach_probability": BUNDLE_ATTACH})


def _add_bundled(spec: SimulationSpec, prod: dict, items: pd.DataFrame) -> pd.DataFrame:
    """An order with a bundle's antecedent gets its consequent too (quantity 1, added just
    after), with probability ``BUNDLE_ATTACH``, unless it holds it already."""
    bundles = planted_bundles(spec, prod)
    rng = _rng(spec, "bundle-orders")
    added = []
    for a, b in bundles[["antecedent", "consequent"]].itertuples(index=False):
        with_a = items[items["product"] == a]
        has_b = set(items.loc[items["product"] == b, "o"])
        attach = (rng.random(len(with_a)) < BUNDLE_ATTACH) & ~with_a["o"].isin(has_b).to_numpy()
        chosen = with_a[attach]
        added.append(pd.DataFrame({"o": chosen["o"], "product": b, "quantity": 1, "ns": chosen["ns"] + NS_PER_MS}))
    return pd.concat([items, *added], ignore_index=True) if added else items


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
