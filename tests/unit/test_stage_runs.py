"""Every run of a stage (``stages.run_stage``: ``marketing run`` and the Airflow tasks alike)
is timed and its outcome recorded in ``ops_stage_runs``, one row per date and stage."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from jobs.platform import stages
from jobs.platform.errors import InputFileError

D = date(2026, 10, 1)


def ok_stage(config, day):
    return {"rows": 1}


def skipped_stage(config, day):
    return {"status": "skipped", "reason": "nothing to do"}


def failing_stage(config, day):
    raise InputFileError("orders.csv line 3: 5 field(s), the header has 4")


def test_each_run_is_timed_and_its_outcome_recorded(make_config, monkeypatch):
    for name in ("ok", "skipped", "failing"):
        monkeypatch.setitem(stages.ALL_STAGES, name, f"tests.unit.test_stage_runs:{name}_stage")
    config = make_config()
    assert stages.run_stage(config, "ok", D) == {"rows": 1}
    stages.run_stage(config, "ok", D)  # a re-run replaces the row
    stages.run_stage(config, "skipped", D)
    with pytest.raises(InputFileError):
        stages.run_stage(config, "failing", D)
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"select stage, status, duration_s, error, finished_at >= started_at "
                f"from {config.warehouse.schema_name}.ops_stage_runs order by stage"
            )
        ).all()
    assert [(stage, status) for stage, status, *_ in rows] == [("failing", "failed"), ("ok", "success"),
                                                               ("skipped", "skipped")]  # fmt: skip
    assert all(duration >= 0 and ordered for _, _, duration, _, ordered in rows)
    assert rows[0][3] == "InputFileError: orders.csv line 3: 5 field(s), the header has 4"
    assert rows[1][3] is None


def caching_stage(config, day):
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    frame = spark.range(1000).persist()
    rdd = spark.sparkContext.parallelize(range(100)).cache()
    assert frame.count() == 1000 and rdd.count() == 100
    if day.day == 2:
        raise InputFileError("failed half way, with its cache still held")
    return {"rows": 1}


def cached_in(spark) -> tuple[int, bool]:
    """(persisted RDDs, whether the cache manager holds any DataFrame) of the session."""
    return (
        spark.sparkContext._jsc.getPersistentRDDs().size(),
        not spark._jsparkSession.sharedState().cacheManager().isEmpty(),
    )


def test_nothing_a_stage_cached_outlives_it_whether_it_succeeds_or_fails(spark, make_config, monkeypatch):
    monkeypatch.setitem(stages.ALL_STAGES, "caching", "tests.unit.test_stage_runs:caching_stage")
    config = make_config()
    assert stages.run_stage(config, "caching", D) == {"rows": 1}
    assert cached_in(spark) == (0, False)
    with pytest.raises(InputFileError):
        stages.run_stage(config, "caching", date(2026, 10, 2))
    assert cached_in(spark) == (0, False)
