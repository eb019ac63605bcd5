"""Shared fixtures: one local Spark session per test run, isolated pipeline configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.postgres", "tests.spark_cluster", "tests.alert_sinks"]

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


@pytest.fixture(scope="module", autouse=True)
def _release_spark_cache():
    """After each module, whatever its tests cached in the shared session is unpersisted (the
    stage runner does so after every stage; tests also call stage functions directly)."""
    yield
    from jobs.platform.spark import release_cached

    release_cached()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto) on loopback for the whole session: its endpoint URL. Tests
    create their own buckets (and may reset it with ``POST /moto-api/reset``)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials and region only in this test's env; loopback never through a proxy."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


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


def shop_env(root: Path) -> dict[str, str]:
    """``MKT_*`` settings (for Airflow processes) of a small simulated shop under ``root`` whose
    first night sweeps its whole (short) history, on local Spark with few partitions."""
    return {
        **{
            f"MKT_STORAGE__{name.upper()}_ROOT": str(root / name)
            for name in ("landing", "lake", "reports", "exports", "state")
        },
        "MKT_SOURCE__URL": f"sqlite:///{root / 'source.db'}",
        "MKT_WAREHOUSE__URL": f"duckdb:///{root / 'warehouse.duckdb'}",
        "MKT_SPARK__MASTER": "local[2]",
        "MKT_SPARK__SHUFFLE_PARTITIONS": "4",
        # The first night sweeps the whole (short) history, so every original of a
        # duplicate is seen and nothing is too late: counts must then equal the truth.
        "MKT_COLLECT__LOOKBACK_DAYS": "30",
        "MKT_CLEAN__LATE_WINDOW_DAYS": "30",
        "MKT_RETENTION__RAW_DAYS": "60",  # raw manifests are read back lookback + late scan days
        "MKT_PII_HASH_KEY": "test-only-key-0123456789abcdef0123",
        "MKT_RECOMMENDER__REGISTRY_ROOT": str(root / "models"),
    }
