"""A small simulated shop published once per test session (nightly + segments + scores),
shared by the tests that need published data but not a shop of their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from jobs.platform.config import PipelineConfig
from jobs.simulator import SimulationSpec

SMALL_SHOP = SimulationSpec(seed=3, days=25, users=400, products=80)


@dataclass
class SmallShop:
    root: Path
    config: PipelineConfig
    last: date


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory, spark) -> SmallShop:
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import run_pipeline
    from jobs.simulator import generate, materialize
    from tests.conftest import shop_config

    root = tmp_path_factory.mktemp("small_shop")
    config = shop_config(root, spark={"shuffle_partitions": 4})
    last = SMALL_SHOP.start_date + timedelta(days=SMALL_SHOP.days - 1)
    materialize(generate(SMALL_SHOP), landing_storage(config), config.source.url, last, root / "truth")
    run_pipeline(config, last, ["nightly", "segments", "scores"])
    return SmallShop(root, config, last)
