"""Backfill equals a straight run: processing past days one by one, after the source database
has moved on (customers, orders and products updated again later), gives the same warehouse as
running them night by night."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.simulator import SimulationSpec, generate, materialize
from tests.faults.test_retries import warehouse_digest

SPEC = SimulationSpec(seed=33, days=12, users=200, products=50)
NIGHTS = [SPEC.start_date + timedelta(days=SPEC.days - n) for n in (3, 2, 1)]
PUBLISHED = ("dim_user", "dim_product", "fct_orders", "fct_order_items", "fct_events_daily")


def _config(root):
    from tests.conftest import shop_config

    return shop_config(root, spark={"shuffle_partitions": 2})


@pytest.fixture(scope="module")
def world():
    return generate(SPEC)


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
