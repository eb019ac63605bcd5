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
