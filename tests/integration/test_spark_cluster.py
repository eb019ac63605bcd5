"""The same job code on a Spark standalone cluster: a master and a worker on loopback
(:mod:`tests.spark_cluster`), the pipeline submitting to ``spark://`` from its own process, as
an Airflow task would.

On a copy of the shared small shop, the cluster re-runs the last night's nightly stages and
then the recommender; the published nightly tables must equal what local mode published for
that night (re-running a date replaces it), and the recommender's lists, similar items and
evaluation must equal the recommender run in local mode on another copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from jobs.recommender.stage import build_recommender
from tests.conftest import shop_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

NIGHTLY_TABLES = {
    "dim_user": ["user_id"],
    "dim_product": ["product_id"],
    "fct_orders": ["order_id"],
    "fct_order_items": ["order_id", "line_no"],
    "fct_events_daily": None,
}
VOLATILE = {"loaded_at", "updated_in_warehouse_at", "model_version"}


def copy_shop(source: Path, target: Path):
    shutil.copytree(source, target)
    return shop_config(target, spark={"shuffle_partitions": 4})


def recommender_settings(folder: Path) -> Path:
    """The project's recommender settings with a gate every night passes and one tuning trial."""
    settings = yaml.safe_load(Path("config/recommender.yaml").read_text())
    settings["gate"]["max_drop_vs_production"] = 1.0
    settings["tuning"]["max_trials"] = 1
    settings["evaluation"].update(holdout_days=5, validation_days=5)
    path = folder / "recommender.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def table(config, name: str, where: str = "") -> pd.DataFrame:
    engine = sa.create_engine(config.warehouse.url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text(f"select * from {name} {where}"), conn)
    finally:
        engine.dispose()
    frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def on_cluster(small_shop, spark_master, tmp_path_factory):
    """The small shop's last night and the recommender, run on the cluster from a subprocess."""
    root = tmp_path_factory.mktemp("cluster_shop")
    config = copy_shop(small_shop.root, root / "shop")
    config = config.model_copy(
        update={"recommender": config.recommender.model_copy(update={"config_file": recommender_settings(root)})}
    )
    raw = config.model_dump(mode="json", by_alias=True)
    raw.pop("source_file", None)
    config_file = root / "pipeline.yaml"
    config_file.write_text(json.dumps(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKT_")}
    env.update(
        MKT_SPARK__MASTER=spark_master,
        MKT_SPARK__CONF=json.dumps(
            {"spark.executor.memory": "2g", "spark.cores.max": "2", "spark.driver.host": "127.0.0.1"}
        ),
        PYSPARK_PYTHON=sys.executable,
    )
    command = [sys.executable, "-m", "jobs.cli.main", "-v", "--config", str(config_file), "run", "--date",
               small_shop.last.isoformat(), "--stage", "nightly", "--stage", "recommender"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)
    assert result.returncode == 0, result.stderr[-3000:]
    return config, result


def test_the_pipeline_runs_on_the_standalone_cluster(on_cluster, small_shop):
    config, result = on_cluster
    engine = sa.create_engine(config.warehouse.url)
    try:
        with engine.connect() as conn:
            query = sa.text("select stage, status from ops_stage_runs where logical_date = :d")
            stages = dict(conn.execute(query, {"d": small_shop.last}).all())
    finally:
        engine.dispose()
    assert {stages[s] for s in ("clean_events", "validate", "load", "recommender")} == {"success"}
    assert "spark://127.0.0.1:" in result.stderr  # the session's master, as logged by the run


def test_the_nightly_tables_equal_local_mode(on_cluster, small_shop):
    config, _ = on_cluster
    for name in NIGHTLY_TABLES:
        pd.testing.assert_frame_equal(table(config, name), table(small_shop.config, name), obj=name)


def test_the_recommender_equals_local_mode(on_cluster, small_shop, tmp_path):
    config, _ = on_cluster
    local = copy_shop(small_shop.root, tmp_path / "local")
    local = local.model_copy(
        update={"recommender": local.recommender.model_copy(update={"config_file": recommender_settings(tmp_path)})}
    )
    build_recommender(local, small_shop.last)
    where = f"where snapshot_date = '{small_shop.last.isoformat()}'"
    lists, expected = table(config, "mart_recommendations", where), table(local, "mart_recommendations", where)
    assert len(lists) > 0 and set(lists["reason_code"]) & {"als", "ease", "item_knn", "popularity"}
    pd.testing.assert_frame_equal(lists, expected, check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(
        table(config, "mart_similar_items", where), table(local, "mart_similar_items", where), check_exact=False,
        rtol=1e-5,
    )  # fmt: skip
    evaluation = ["model", "user_group", "metric", "value", "users"]
    pd.testing.assert_frame_equal(
        table(config, "mart_model_evaluation", where)[evaluation],
        table(local, "mart_model_evaluation", where)[evaluation],
        check_exact=False,
        rtol=1e-6,
    )
