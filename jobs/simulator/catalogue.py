"""The catalogue: products spread over the categories with a long-tailed popularity, made by
brands that mostly serve one category, each with a latent taste, a shop-like price and, for a
few, a price change during the period (a newer row version of the product).
:func:`_make_products` returns the source rows and the per-product arrays the rest of the
simulation samples from; :func:`_price_at` gives the price a product had at an instant."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.simulator.spec import (
    BRAND_CATEGORIES,
    BRANDS,
    CATALOG,
    CATEGORY_L1,
    N_BRAND,
    N_CAT,
    N_TASTE,
    NO_TIME,
    NS_PER_DAY,
    SimulationSpec,
    _Calendar,
    _ms,
    _rng,
    _utc,
)

ADJECTIVES = ("Classic", "Pro", "Lite", "Air", "Max", "Soft", "Urban", "Eco", "Plus", "Mini")


def _shop_price(rng: np.random.Generator, raw: np.ndarray) -> np.ndarray:
    """Shop-like prices: 159.00, 158.99 or 158.90."""
    base = np.clip(np.round(raw), 2, 6999)
    ending = rng.choice(np.array([0.0, -0.01, -0.1]), size=len(base), p=[0.4, 0.35, 0.25])
    return np.round(base + ending, 2)


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
        new_price[changed] = _shop_price(rng, price[changed] * rng.uniform(0.75, 1.15, changed.sum()))
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
    return np.where(ns >= prod["change_ns"][product], prod["new_price"][product], prod["price"][product])
