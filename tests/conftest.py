"""Shared fixtures: one local Spark session per test run, isolated pipeline configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.postgres"]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)


@pytest.fixture(scope="session")
def spark():
    from jobs.platform.config import load_config
    from jobs.platform.spark import get_spark

    config = load_config(overrides={"spark": {"master": "local[2]", "shuffle_partitions": 2}})
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path: Path):
    """Build a config whose every store lives under tmp_path (plus any overrides)."""
    from jobs.platform.config import load_config

    def build(**sections):
        base = {
            "storage": {
                "landing_root": str(tmp_path / "landing"),
                "lake_root": str(tmp_path / "lake"),
                "reports_root": str(tmp_path / "reports"),
                "exports_root": str(tmp_path / "exports"),
                "state_root": str(tmp_path / "state"),
            },
            "source": {"url": f"sqlite:///{tmp_path / 'source.db'}"},
            "warehouse": {"url": f"duckdb:///{tmp_path / 'warehouse.duckdb'}"},
            "portal": {"database_url": f"sqlite:///{tmp_path / 'portal.db'}"},
            "spark": {"master": "local[2]", "shuffle_partitions": 2},
            "recommender": {"registry_root": str(tmp_path / "models")},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        return load_config(environ={}, overrides=base)

    return build


def shop_config(root: Path, **sections):
    """Config for a small simulated shop under ``root`` whose first night sweeps its whole
    (short) history; ``sections`` override or add settings."""
    from jobs.platform.config import load_config

    base = {
        "storage": {
            name: str(root / name)
            for name in ("landing_root", "lake_root", "reports_root", "exports_root", "state_root")
        },
        "source": {"url": f"sqlite:///{root / 'source.db'}"},
        "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
        "portal": {"database_url": f"sqlite:///{root / 'portal.db'}"},
        "collect": {"lookback_days": 40},
        "retention": {"raw_days": 60},  # more than collect reads back (lookback + late scan)
        "clean": {"late_window_days": 40},
        "validation": {"build_data_docs": False},
        "recommender": {"registry_root": str(root / "models")},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return load_config(environ={}, overrides=base)
