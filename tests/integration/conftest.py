"""A small simulated shop published once per test session, shared by the tests that need
published data but not a shop of their own: its last three nights (Monday to Wednesday) each
run the nightly, customer and campaign stages (allocate, export, measure), and before each
night its customers answer the campaigns exported on the nights before (the simulator reads
the exports as a messaging system would)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.platform.config import PipelineConfig
from jobs.simulator import SimulationSpec

SMALL_SHOP = SimulationSpec(
    seed=3,
    days=23,  # the last three nights are Monday to Wednesday
    users=600,
    products=80,
    # a strong newsletter, so that its first cohort, measured on the third night, shows it
    campaign_uplift=(("weekly_newsletter", 0.3), ("cart_abandonment", 0.15), ("cross_sell", 0.0)),
)
SMALL_SHOP_STAGES = ["nightly", "segments", "tags", "scores", "allocate", "export", "measure"]


@dataclass
class SmallShop:
    root: Path
    config: PipelineConfig
    last: date
    nights: list[date]
    materialized: dict[date, dict]


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory, spark) -> SmallShop:
    from jobs.activation.export import exports_storage
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import run_pipeline
    from jobs.simulator import generate, materialize
    from tests.conftest import shop_config

    root = tmp_path_factory.mktemp("small_shop")
    config = shop_config(root, spark={"shuffle_partitions": 4})
    last = SMALL_SHOP.start_date + timedelta(days=SMALL_SHOP.days - 1)
    nights = [last - timedelta(days=2), last - timedelta(days=1), last]
    world, materialized = generate(SMALL_SHOP), {}
    for night in nights:
        materialized[night] = materialize(
            world, landing_storage(config), config.source.url, night, root / "truth", exports_storage(config)
        )
        run_pipeline(config, night, SMALL_SHOP_STAGES)
    return SmallShop(root, config, last, nights, materialized)
