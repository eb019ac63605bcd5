"""A task killed mid-write, then retried, for every stage: the outputs equal an undisturbed
run's, and data changed after validation is never published.

Two copies of one small simulated shop are processed for the same date: one straight through,
one where every stage dies once in the middle of writing its outputs (after some of them are
written) and is then run again. The lake zones and the warehouse tables of both are compared
by content.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from jobs.platform import stages
from jobs.platform.errors import NotValidatedError
from jobs.simulator import SimulationSpec, generate, materialize

SPEC = SimulationSpec(seed=21, days=10, users=250, products=60)
DAY = SPEC.start_date + timedelta(days=SPEC.days - 1)
# every stage of the three DAGs that writes data (retention only deletes)
STAGES = tuple(
    stage for stage in (*stages.STAGES, *stages.CUSTOMER_STAGES, *stages.MODEL_STAGES) if stage != "retention"
)
# Columns that say when something ran, not what it holds (a model version is named after the
# time it was trained).
RUN_TIME_COLUMNS = {
    "loaded_at",
    "recorded_at",
    "validated_at",
    "first_used_at",
    "extracted_at",
    "collected_at",
    "model_version",
    "first_loaded_at",
    "started_at",
    "finished_at",
    "duration_s",
    "peak_rss_mb",
    "published_at",
}
# Where each stage is killed: (object, attribute), after the original call did its writing.
KILL_POINTS = {
    "collect_events": ("jobs.platform.storage:LocalStorage", "write_file"),
    "collect_sources": ("jobs.platform.storage:LocalStorage", "write_bytes"),
    "clean_sources": ("pyspark.sql.readwriter:DataFrameWriter", "parquet"),
    "clean_events": ("pyspark.sql.readwriter:DataFrameWriter", "parquet"),
    "validate": ("jobs.ingest.validate", "write_json"),
    # inside the publish transaction, after every table was written: the transaction rolls back
    "load": ("jobs.platform.publish", "record_run"),
    "segments": ("jobs.platform.publish", "record_run"),
    "scores": ("jobs.platform.publish", "record_run"),
    "tags": ("jobs.platform.publish", "record_run"),
    "recommender": ("jobs.platform.publish", "record_run"),
}
# A recommender that trains in seconds on a ten-day shop: one tuning trial, short windows, and
# a gate every model passes (the gate itself is tested in test_recommender_stage).
RECOMMENDER_SETTINGS = {
    "tuning": {"max_trials": 1},
    "evaluation": {"holdout_days": 3, "validation_days": 3},
    "gate": {"max_drop_vs_production": 1.0},
}


class Killed(RuntimeError):
    """Stands for the worker process dying mid-write."""


def _target(path: str):
    import importlib

    module, _, attribute = path.partition(":")
    target = importlib.import_module(module)
    return getattr(target, attribute) if attribute else target


def kill_once(monkeypatch, stage: str) -> None:
    owner = _target(KILL_POINTS[stage][0])
    name = KILL_POINTS[stage][1]
    original = getattr(owner, name)
    state = {"done": False}

    @functools.wraps(original)
    def dying(*args, **kwargs):
        result = original(*args, **kwargs)
        if not state["done"]:
            state["done"] = True
            raise Killed(f"{stage} killed after {name}")
        return result

    monkeypatch.setattr(owner, name, dying)


def _recommender_file(root: Path) -> Path:
    import yaml

    from jobs.recommender.settings import DEFAULT_RECOMMENDER

    path = root / "recommender.yaml"
    settings = yaml.safe_load(Path(DEFAULT_RECOMMENDER).read_text())
    for section, values in RECOMMENDER_SETTINGS.items():
        settings[section].update(values)
    path.write_text(yaml.safe_dump(settings))
    return path


def _shop(root: Path, world, monkeypatch):
    from jobs.platform.lake import landing_storage
    from tests.conftest import shop_config

    monkeypatch.setenv("MKT_PII_HASH_KEY", "retry-test-key-0123456789abcdef0123456789")
    config = shop_config(
        root,
        spark={"shuffle_partitions": 2},
        recommender={"registry_root": str(root / "models"), "config_file": str(_recommender_file(root))},
    )
    materialize(world, landing_storage(config), config.source.url, DAY, root / "truth")
    return config


def _frame_digest(frame: pd.DataFrame) -> str:
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_TIME_COLUMNS])
    text = frame.astype(str)
    text = text.sort_values(list(text.columns)).reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(text, index=False).values.tobytes()).hexdigest()


def lake_digest(config) -> dict[str, str]:
    """Per folder of Parquet data (partition folders included, file names not): a digest of the
    rows; plus the bytes of every landing file copied to the raw or quarantine zone."""
    root = Path(config.storage.lake_root)
    folders: dict[str, list[Path]] = {}
    digests: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith((".", "_")) or "/_runs/" in path.as_posix():
            continue
        relative = path.relative_to(root).as_posix()
        if path.suffix == ".parquet":
            folders.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
        else:
            digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    for folder, files in folders.items():
        frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        digests[folder] = _frame_digest(frame)
    return digests


def warehouse_digest(config) -> dict[str, str]:
    from jobs.platform.warehouse import schema_docs

    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    digests = {}
    with engine.connect() as conn:
        for table in schema_docs():
            frame = pd.read_sql(sa.text(f"select * from {config.warehouse.schema_name}.{table}"), conn)
            if table == "ops_pipeline_runs":  # details name this copy's folders; counts must agree
                frame = frame.drop(columns=["details_json"])
            digests[table] = _frame_digest(frame)
    return digests


def _count(config, table: str) -> int:
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {config.warehouse.schema_name}.{table}")).scalar_one()


@pytest.fixture(scope="module")
def world():
    return generate(SPEC)


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory, spark):
    from jobs.platform.stages import run_pipeline

    with pytest.MonkeyPatch.context() as monkeypatch:
        config = _shop(tmp_path_factory.mktemp("straight"), world, monkeypatch)
        run_pipeline(config, DAY, list(STAGES))
        return config, lake_digest(config), warehouse_digest(config)


def test_every_stage_killed_mid_write_then_retried_gives_the_undisturbed_outputs(
    straight, world, tmp_path, monkeypatch
):
    from jobs.platform.stages import run_pipeline

    config = _shop(tmp_path, world, monkeypatch)
    for stage in STAGES:
        with monkeypatch.context() as dying:
            kill_once(dying, stage)
            with pytest.raises(Killed):
                run_pipeline(config, DAY, [stage])
        run_pipeline(config, DAY, [stage])  # Airflow's retry
    _, lake, warehouse = straight
    # the comparison covers real data: every zone and the published tables
    assert {key.split("/")[0] for key in lake} >= {"raw", "clean", "quarantine", "restricted"}
    assert any(key.startswith("clean/events/batch_date=") for key in lake)
    assert _count(config, "mart_recommendations") > 0 and _count(config, "mart_user_tags") > 0
    assert lake_digest(config) == lake
    differing = {t for t in warehouse if warehouse_digest(config)[t] != warehouse[t]}
    assert not differing, f"warehouse tables differ after retries: {sorted(differing)}"


def test_load_refuses_clean_data_that_changed_after_validation(straight, tmp_path, monkeypatch):
    import shutil

    from jobs.ingest.load import load_warehouse
    from jobs.platform.lake import clean_source_prefix, lake_storage

    source, _, _ = straight
    copy = tmp_path / "copy"
    shutil.copytree(Path(source.storage.lake_root).parent, copy)
    from tests.conftest import shop_config

    config = shop_config(copy, spark={"shuffle_partitions": 2})
    monkeypatch.setenv("MKT_PII_HASH_KEY", "retry-test-key-0123456789abcdef0123456789")
    lake = lake_storage(config)
    victim = next(info.key for info in lake.list(clean_source_prefix("orders", DAY)) if info.key.endswith(".parquet"))
    table = pq.read_table(lake.uri(victim))
    pq.write_table(table.slice(1), lake.uri(victim))  # one order less than was validated
    with pytest.raises(NotValidatedError, match="changed after it was validated"):
        load_warehouse(config, DAY)


def test_a_failing_pii_check_never_copies_the_values_it_caught(straight, spark, tmp_path, monkeypatch, caplog):
    """A clear email where a hash belongs fails the users contract; the email appears in no
    message, log, Great Expectations result or Data Docs page."""
    import shutil

    from jobs.ingest.validate import validate
    from jobs.platform.errors import ContractViolation
    from jobs.platform.lake import clean_source_prefix, lake_storage
    from tests.conftest import shop_config

    leaked = "leaked.person@example.org"
    source, _, _ = straight
    copy = tmp_path / "copy"
    shutil.copytree(Path(source.storage.lake_root).parent, copy)
    shutil.rmtree(copy / "reports_root", ignore_errors=True)  # its GX project points at the original's docs
    monkeypatch.setenv("MKT_PII_HASH_KEY", "retry-test-key-0123456789abcdef0123456789")
    config = shop_config(copy, spark={"shuffle_partitions": 2}, validation={"build_data_docs": True})
    from pyspark.sql import functions as F

    folder = lake_storage(config).uri(clean_source_prefix("users", DAY))
    users = spark.read.parquet(folder)
    first = users.agg(F.min("user_id")).first()[0]
    tampered = users.withColumn(
        "email_hash", F.when(F.col("user_id") == first, F.lit(leaked)).otherwise(F.col("email_hash"))
    )
    tampered.write.parquet(str(tmp_path / "tampered"))
    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "tampered", folder)
    with pytest.raises(ContractViolation) as caught:
        validate(config, DAY)
    assert "email_is_hashed" in str(caught.value) and "1 of" in str(caught.value), str(caught.value)
    assert leaked not in str(caught.value) and leaked not in caplog.text
    written = [
        p for p in Path(config.storage.reports_root).parent.rglob("*") if p.is_file() and "lake_root" not in p.parts
    ]
    assert any(p.suffix == ".html" for p in written), "Data Docs were built"
    assert not [p for p in written if p.suffix != ".db" and leaked.encode() in p.read_bytes()]
