"""``marketing score-customers``: the nightly customer logic (RFM, lifecycle, churn risk and
value) on any order export, outside the nightly flow.

Input: CSV or Parquet with ``user_id, order_id, order_ts, amount`` and optional ``status``
(without it every order counts as a purchase). Only orders at or before ``--as-of`` are used.
Output (CSV or Parquet by extension): one row per customer with recency_days, frequency,
monetary, r_score, f_score, m_score, rfm_group, lifecycle_stage, churn_risk, churn_risk_band,
expected_next_order_date, predicted_value_12m. Runs on Spark, with the same functions and
``config/segments.yaml`` as the nightly stages.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import InputFileError
from jobs.platform.files import file_format, read_table, timestamp_column, write_frame
from jobs.platform.interface import PURCHASE_STATUSES

REQUIRED = ("user_id", "order_id", "order_ts", "amount")
OUTPUT = (
    "user_id",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_group",
    "lifecycle_stage",
    "churn_risk",
    "churn_risk_band",
    "expected_next_order_date",
    "predicted_value_12m",
)


def read_orders(spark, path: Path) -> DataFrame:
    """Read and check an order export; one-line ValueError naming the file and column."""
    frame = read_table(spark, path, "--orders", REQUIRED)
    columns = set(frame.columns)
    typed = frame.select(
        F.col("user_id").cast("string").alias("raw_user_id"),
        F.col("order_ts").cast("string").alias("raw_order_ts"),
        F.col("amount").cast("string").alias("raw_amount"),
        F.col("user_id").cast("string").try_cast("bigint").alias("user_id"),
        F.col("order_id").cast("string").alias("order_id"),
        timestamp_column(F.col("order_ts")).alias("order_ts"),
        F.col("amount").cast("string").try_cast("double").alias("amount"),
        (F.lower(F.trim(F.col("status").cast("string"))) if "status" in columns else F.lit(None).cast("string")).alias(
            "status"
        ),
    ).cache()
    checked = (
        ("user_id", "raw_user_id", "a number"),
        ("order_ts", "raw_order_ts", "a timestamp (ISO-8601, or Unix epoch seconds or milliseconds)"),
        ("amount", "raw_amount", "a number"),
    )
    # one pass counts the bad values of every checked column; examples only when needed
    bad = typed.agg(*[F.count(F.when(F.col(c).isNull(), 1)).alias(c) for c, _, _ in checked]).first()
    for column, raw, kind in checked:
        if bad[column]:
            example = typed.where(F.col(column).isNull()).select(raw).first()[0]
            raise InputFileError(
                f"--orders file {path}: column {column} has {bad[column]} value(s) that are not {kind} (e.g. {example!r})"
            )
    if typed.limit(1).count() == 0:
        raise InputFileError(f"--orders file {path} has no orders (only a header?): nothing to score")
    return typed.drop("raw_user_id", "raw_order_ts", "raw_amount")


def score_orders(orders: DataFrame, as_of: date, segments_file: str | None = None) -> pd.DataFrame:
    """The nightly customer logic on an order DataFrame; one pandas row per customer."""
    from jobs.customers.scores import score_customers_frame
    from jobs.customers.segments import lifecycle_stages, rfm_metrics, score_rfm
    from jobs.customers.segments_config import load_segments

    segments = load_segments(segments_file)
    counted = orders.where(F.col("status").isNull() | F.col("status").isin(*PURCHASE_STATUSES))
    bought = (
        counted.select("user_id", "order_id", F.to_date("order_ts").alias("order_date"), "amount")
        .where(F.col("order_date") <= F.lit(as_of))
        .persist()
    )
    users = orders.where(F.to_date("order_ts") <= F.lit(as_of)).select("user_id").distinct()
    rfm = score_rfm(rfm_metrics(bought, as_of, segments.rfm.lookback_days), segments.rfm).toPandas()
    stages = lifecycle_stages(users, bought, as_of, segments.lifecycle, segments.rfm.lookback_days).toPandas()
    scores = score_customers_frame(bought, as_of).scores
    bought.unpersist()
    result = (
        stages[["user_id", "lifecycle_stage"]]
        .merge(rfm, on="user_id", how="left")
        .merge(scores, on="user_id", how="left")
    )
    return result[list(OUTPUT)].sort_values("user_id").reset_index(drop=True)


def score_file(config: PipelineConfig, orders_path: str, as_of: date, out_path: str) -> dict:
    """Read ``orders_path``, score every customer as of ``as_of`` and write ``out_path``."""
    from jobs.platform.spark import get_spark

    out = Path(out_path)
    file_format(out, "--out")  # a bad extension fails before any work
    spark = get_spark(config)
    result = score_orders(read_orders(spark, Path(orders_path)), as_of, config.customers.segments_file)
    write_frame(result, out, "--out")
    return {"customers": len(result), "out": str(out), "as_of": as_of.isoformat()}
