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


# The UCI export's columns mapped onto the interface (as config/examples/online-retail.source.yaml)
ONLINE_RETAIL_MAPPING = """\
kind: files
root: {root}
format: {format}
timezone: Europe/London
returns: {{order_pattern: "^C"}}
order_lines:
  files: "{files}"
  columns: {{order_id: InvoiceNo, product_id: StockCode, product_name: Description, quantity: Quantity,
             unit_price: UnitPrice, ordered_at: InvoiceDate, customer_id: CustomerID, region: Country}}
  values: {{channel: web, status: completed}}
"""


def online_retail_mapping(root: Path, files: str, fmt: str = "csv", extra: str = "") -> str:
    """A mapping file's text for UCI-shaped order lines under ``root`` (plus ``extra`` YAML)."""
    return ONLINE_RETAIL_MAPPING.format(root=root, files=files, format=fmt) + extra


def write_raw_extracts(config, day, raw: dict, schemas: dict) -> None:
    """Hand-made raw source extracts of ``day`` (``raw``: table -> rows) as collect writes them:
    one Parquet part and its manifest per table."""
    import io

    import pyarrow as pa

    from jobs.platform.lake import lake_storage, raw_source_prefix, write_json

    lake = lake_storage(config)
    for table, rows in raw.items():
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schemas[table]), buffer)
        prefix = raw_source_prefix(table, day)
        lake.write_bytes(prefix + "part-00000.parquet", buffer.getvalue())
        manifest = {"table": table, "logical_date": day.isoformat(), "row_count": len(rows),
                    "parts": ["part-00000.parquet"]}  # fmt: skip
        write_json(lake, prefix + "_manifest.json", manifest)
