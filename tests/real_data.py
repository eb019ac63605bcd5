"""Real shop data shipped in ``tests/data/real/`` (see its README), read the way the tests and
benchmarks need it."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

REAL = Path(__file__).resolve().parent / "data" / "real"
ONLINE_RETAIL = REAL / "online_retail.parquet"


def online_retail_baskets(first: str | None = None, last: str | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """``(baskets, names)`` of the UCI Online Retail data: one row per invoice that is not a
    cancellation ("C..."), placed in ``[first, last)`` when given (``order_id``, ``items``: the
    sorted distinct product ids of its lines of positive quantity), and each product id's
    description. Stock codes become integer ids in sorted order."""
    lines = pq.read_table(ONLINE_RETAIL, columns=["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate"])
    lines = lines.to_pandas()
    keep = ~lines["InvoiceNo"].str.startswith("C") & (lines["Quantity"] > 0)
    if first is not None:
        keep &= lines["InvoiceDate"] >= pd.Timestamp(first)
    if last is not None:
        keep &= lines["InvoiceDate"] < pd.Timestamp(last)
    lines = lines[keep]
    codes = {code: i for i, code in enumerate(sorted(lines["StockCode"].unique()), start=1)}
    lines = lines.assign(product_id=lines["StockCode"].map(codes))
    names = lines.drop_duplicates("product_id").set_index("product_id")["Description"]
    items = lines.groupby("InvoiceNo")["product_id"].agg(lambda ids: sorted(set(ids))).reset_index(drop=True)
    return pd.DataFrame({"order_id": range(len(items)), "items": items}), names


def shuffled(baskets: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """The same baskets with every product moved to a random basket: each basket keeps its size
    and each product its frequency (a product drawn twice into one basket counts once), and any
    co-purchase structure is gone."""
    flat = [item for items in baskets["items"] for item in items]
    random.Random(seed).shuffle(flat)
    out, start = [], 0
    for items in baskets["items"]:
        out.append(sorted(set(flat[start : start + len(items)])))
        start += len(items)
    return baskets.assign(items=out)
