"""The shop's users: signups before and during the period, profiles (region, city, contact
details, consents) with the occasional later change, latent category, brand and taste interests,
a visit rate and propensity to buy, and a lifecycle trajectory (prospect, new, habitual,
declining, churned, reactivated) that :func:`_lifecycle` turns into a true state and a visit
rate multiplier per user and day."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.simulator.spec import (
    BRAND_CATEGORIES,
    CATALOG,
    CATEGORY_L1,
    CHURNED,
    DECLINING,
    HABITUAL,
    N_BRAND,
    N_CAT,
    N_TASTE,
    NEW,
    NEW_PHASE_DAYS,
    NS_PER_DAY,
    NS_PER_HOUR,
    PROSPECT,
    REACTIVATED,
    TASTE_CONCENTRATION,
    SimulationSpec,
    _Calendar,
    _hex_ids,
    _local_days,
    _ms,
    _rng,
    _times_in_days,
    _utc,
)

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


def _signups(rng: np.random.Generator, spec: SimulationSpec, cal: _Calendar) -> tuple[np.ndarray, np.ndarray]:
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
    email = [f"{NAME_STEMS[s]}.{u}@{EMAIL_DOMAINS[d]}" for s, u, d in zip(stems, user_id, domains, strict=True)]
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


def _user_interests(rng: np.random.Generator, spec: SimulationSpec, prod: dict, n: int) -> dict[str, np.ndarray]:
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


def _randint(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    """Integers in [low, high) with high clamped to at least low + 1."""
    return rng.integers(low, max(high, low + 1), size=n)


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


def _user_versions(rng: np.random.Generator, cal: _Calendar, users: pd.DataFrame, signup: np.ndarray) -> pd.DataFrame:
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
