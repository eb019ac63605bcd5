"""Backfill equals a straight run: processing past days one by one, after the source database
has moved on (customers, orders and products updated again later), gives the same warehouse as
running them night by night."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.simulator import SimulationSpec, generate, materialize
from tests.faults.test_retries import warehouse_digest

SPEC = SimulationSpec(seed=33, days=12, users=200, products=50)
NIGHTS = [SPEC.start_date + timedelta(days=SPEC.days - n) for n in (2, 1)]
PUBLISHED = (
    "dim_user",
    "dim_product",
    "fct_orders",
    "fct_order_items",
    "fct_events_daily",
    "ops_quarantine_daily",
)


def _config(root):
    from tests.conftest import shop_config

    return shop_config(root, spark={"shuffle_partitions": 2})


@pytest.fixture(scope="module")
def world():
    """The shop, with the product viewed most on the first backfilled night (and never ordered,
    so no order line brings it along) repriced on the second: a backfill of the first night
    finds it in the source only at its later version."""
    import pandas as pd

    world = generate(SPEC)
    events = world.events
    first = events[
        (events["local_date"] == pd.Timestamp(NIGHTS[0])) & ~events["product_id"].isin(world.order_items["product_id"])
    ]
    product = int(first["product_id"].value_counts().index[0])
    versions = world.product_versions
    repriced = versions[versions["product_id"] == product].tail(1).copy()
    repriced["price"] = (repriced["price"] * 0.8).round(2)
    repriced["updated_at"] = pd.Timestamp(f"{NIGHTS[1]} 12:00", tz="UTC")
    world.product_versions = pd.concat([versions, repriced], ignore_index=True).sort_values(
        ["product_id", "updated_at"], kind="stable", ignore_index=True
    )
    world.repriced_product = product
    return world


def test_backfilling_past_days_gives_the_warehouse_of_a_straight_run(world, tmp_path, monkeypatch, spark):
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import run_pipeline

    monkeypatch.setenv("MKT_PII_HASH_KEY", "backfill-test-key-0123456789abcdef0123456789")
    straight, backfill = _config(tmp_path / "straight"), _config(tmp_path / "backfill")
    for night in NIGHTS:  # every night, the source database as it was that night
        materialize(world, landing_storage(straight), straight.source.url, night, tmp_path / "straight" / "truth")
        run_pipeline(straight, night, ["nightly"])
    # weeks later: the source database and the landing zone as they are now, the past days run in order
    materialize(world, landing_storage(backfill), backfill.source.url, NIGHTS[-1], tmp_path / "backfill" / "truth")
    for night in NIGHTS:
        run_pipeline(backfill, night, ["nightly"])
    expected, got = warehouse_digest(straight), warehouse_digest(backfill)
    assert {table for table in PUBLISHED if expected[table] != got[table]} == set()
    # the repriced product's views of the first night were cleaned, not quarantined as unknown
    assert _events_of(backfill, world.repriced_product, NIGHTS[0]) > 0


def _events_of(config, product_id: int, day) -> int:
    """Clean events of batch ``day`` on ``product_id``."""
    import pyarrow.dataset as ds

    from jobs.platform.lake import clean_events_prefix, lake_storage

    clean = ds.dataset(lake_storage(config).uri(clean_events_prefix(day)), format="parquet", partitioning="hive")
    return clean.count_rows(filter=ds.field("product_id") == product_id)
