"""The one place a SparkSession is built, so every stage runs with the same settings."""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.platform.config import PROJECT_ROOT, PipelineConfig

log = logging.getLogger(__name__)
CHECKPOINTS = "_tmp/spark-checkpoints"  # lake key
LOG4J_CONFIG = PROJECT_ROOT / "config" / "log4j2.properties"  # JVM logs to stderr, warnings and up


def get_spark(config: PipelineConfig):
    """Return the process-wide SparkSession configured from ``config.spark``.

    Under spark-submit the master comes from the command line and the configured one is
    ignored; locally it is ``local[*]``. Timestamps are handled in UTC throughout.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON") or _python())
    builder = (
        SparkSession.builder.appName(config.spark.app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.ansi.enabled", "false")
        # A JSON line with a repeated key must not fail the whole batch; the last value wins.
        .config("spark.sql.mapKeyDedupPolicy", "LAST_WIN")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}")
        # Reading many files by name (a night's raw files: 2,321 on a 60-day sweep) lists them
        # in a Spark job of up to 10,000 tasks, one per path by default: 6-9 s on 2 cores for
        # what 16 tasks list in 0.4 s (each task lists its share of the paths).
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "16")
        # checkpoint files (long ALS runs) are deleted once their RDD is gone
        .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        # The status store keeps every finished query's plan and metrics for the UI (1,000 by
        # default) even with the UI off: in a process running many stages (`marketing run`, the
        # test suite) that is hundreds of MiB of driver heap nobody reads.
        .config("spark.sql.ui.retainedExecutions", "50")
        .config("spark.ui.retainedJobs", "200")
        .config("spark.ui.retainedStages", "200")
    )
    if "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master(config.spark.master)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level)
    if spark.sparkContext.getCheckpointDir() is None:
        # in the lake, not a driver-local folder: on a cluster the executors write and read it
        from jobs.platform.lake import lake_storage, spark_uri

        spark.sparkContext.setCheckpointDir(spark_uri(lake_storage(config), CHECKPOINTS))
    log.info(
        "Spark %s: master %s, %d cores", spark.version, spark.sparkContext.master, spark.sparkContext.defaultParallelism
    )
    return spark


@contextmanager
def time_budget(spark, seconds: float, what: str, setting: str) -> Iterator[None]:
    """Run the block's Spark jobs in a job group of their own and cancel them after ``seconds``;
    a block cut short raises :class:`BudgetExceededError` naming ``setting`` instead of running
    on (Spark has no time limit of its own for a job)."""
    from jobs.platform.errors import BudgetExceededError

    context = spark.sparkContext
    group = f"budget-{uuid.uuid4().hex[:12]}"
    context.setJobGroup(group, what, interruptOnCancel=True)
    expired = threading.Event()

    def cancel() -> None:
        expired.set()
        context.cancelJobGroup(group)

    timer = threading.Timer(seconds, cancel)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception as exc:
        if expired.is_set():
            raise BudgetExceededError(f"{what} did not finish within {seconds:g} s ({setting}); cancelled") from exc
        raise
    finally:
        timer.cancel()
        # every property setJobGroup set goes: a lingering interruptOnCancel would make every later
        # job of this thread interrupt its tasks' threads when cancelled (Spark cancels jobs on its
        # own, e.g. after a limit), which in a long-lived session left a collect waiting forever
        for name in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
            context.setLocalProperty(name, None)


def release_cached() -> int:
    """Unpersist everything cached in this process's Spark session, if one is running, and
    return how many cached RDDs were released.

    A stage hands its results on through the lake and the warehouse, never through Spark's
    cache, so :func:`jobs.platform.stages.run_stage` calls this after every stage: what a stage
    persisted and did not release (an error half way, an ALS model's factors) must not stay on
    the driver's heap for the next stage of the same process, where it ran the heap out of
    memory (``AGGREGATE_OUT_OF_MEMORY``) after a few hundred stages.
    """
    if "pyspark" not in sys.modules:  # no session without it: a stage that used no Spark
        return 0
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    context = SparkContext._active_spark_context
    if context is None:
        return 0
    persistent = context._jsc.getPersistentRDDs()
    released = persistent.size()
    session = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    if session is not None:
        session.catalog.clearCache()  # cached DataFrames: the cache manager's entries too
    for rdd in list(persistent.values()):
        rdd.unpersist(False)
    return released


def _python() -> str:
    return sys.executable
