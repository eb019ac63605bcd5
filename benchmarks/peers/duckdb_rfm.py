"""DuckDB peer of the RFM part of the Spark segments stage (``jobs/customers/segments.py``), for
benchmarks.

:func:`rfm_duckdb` computes, in DuckDB SQL over the lake's clean orders, the rows
``build_segments`` publishes into ``mart_user_rfm`` (all columns but ``loaded_at``):

- orders as ``published.published_tables`` gives them: ``clean/orders/extract_date=D/`` of the
  published batches up to D, the latest version of each ``order_id`` by ``updated_at``
  (nulls last, as ``latest_per_key``);
- ``purchases``: status in ``PURCHASE_STATUSES``, ``order_date`` <= D, ``total_amount`` as double;
- ``rfm_metrics``: recency (days since the last purchase, all time), frequency and monetary
  over the lookback (``order_date > D - lookback_days``), ``avg_order_value``; rounding to 2
  decimals as Spark's ``round`` on a double does it (HALF_UP on the shortest decimal text of the
  double, ``BigDecimal.valueOf``), not DuckDB's ``round(double)``;
- ``score_rfm``: quantile scores ``least(5, 1 + floor(5 * worse / n))`` with ``rank()`` ties, or
  the fixed thresholds below ``min_population_for_quantiles``; ``fm_score``; the first group
  rule of ``config/segments.yaml`` that matches; customers without a purchase in the lookback
  unscored, ``Lost``, method ``inactive``.

Deliberate difference: when two versions of an order share the same ``updated_at``, Spark's
``row_number`` keeps either one and this peer keeps the one of the latest extract date (the
pipeline's extracts of one order at one ``updated_at`` are the same row, so the result is too).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from jobs.customers.segments_config import RfmConfig, SegmentsConfig
from jobs.platform.interface import PURCHASE_STATUSES
from jobs.platform.lake import clean_source_prefix

RFM_COLUMNS = (
    "snapshot_date",
    "user_id",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "r_score",
    "f_score",
    "m_score",
    "fm_score",
    "rfm_group",
    "scoring_method",
    "first_order_date",
    "last_order_date",
)
# Spark's round(double, 2): BigDecimal of Double.toString(x), HALF_UP (DuckDB rounds decimals half
# away from zero, which is HALF_UP), back to double.
SPARK_ROUND_2 = "CREATE MACRO spark_round2(x) AS CAST(round(CAST(CAST(x AS VARCHAR) AS DECIMAL(38, 18)), 2) AS DOUBLE)"


def _quantile(value: str, higher_is_better: bool) -> str:
    order = "ASC" if higher_is_better else "DESC"
    return f"CAST(least(5, 1 + floor(5 * (rank() OVER (ORDER BY {value} {order}) - 1) / n)) AS INTEGER)"


def _fixed(value: str, bounds: list[float], lower_is_better: bool = False) -> str:
    op = "<=" if lower_is_better else ">="
    return (
        "CAST(1 + "
        + " + ".join(f"CASE WHEN {value} {op} {float(b)!r} THEN 1 ELSE 0 END" for b in bounds)
        + " AS INTEGER)"
    )


def _group(rfm: RfmConfig) -> str:
    rules = " ".join(
        f"WHEN r_score BETWEEN {g.r[0]} AND {g.r[1]} AND fm_score BETWEEN {g.fm[0]} AND {g.fm[1]} "
        f"THEN '{g.name.replace(chr(39), chr(39) * 2)}'"
        for g in rfm.groups
    )
    return f"CASE {rules} END"


def rfm_duckdb(
    lake_root: str, as_of: date, batches: set, settings: SegmentsConfig | RfmConfig, threads: int | None = None
) -> pd.DataFrame:
    """``mart_user_rfm``'s rows for snapshot D (without ``loaded_at``), one per customer who ever
    bought by D, from the clean orders of the published ``batches``; ``settings`` is the
    segments configuration (``load_segments()``) or its ``rfm`` part."""
    rfm = settings.rfm if isinstance(settings, SegmentsConfig) else settings
    if as_of not in batches:
        raise ValueError(f"{as_of} is not published yet (not in batches): RFM reads published data only")
    orders = Path(lake_root) / clean_source_prefix("orders")
    statuses = ", ".join(f"'{s}'" for s in PURCHASE_STATUSES)
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        con.execute(SPARK_ROUND_2)
        con.execute("CREATE TEMP TABLE batches AS SELECT unnest($b::DATE[]) AS d", {"b": sorted(batches)})
        con.execute(
            f"""CREATE TEMP TABLE metrics AS
            WITH versions AS (
                SELECT *, CAST(extract_date AS DATE) AS extracted
                FROM read_parquet('{orders}/**/*.parquet', hive_partitioning = true, union_by_name = true)
                WHERE CAST(extract_date AS DATE) <= $d AND CAST(extract_date AS DATE) IN (SELECT d FROM batches)
            ), latest AS (
                SELECT * FROM versions
                QUALIFY row_number() OVER (
                    PARTITION BY order_id ORDER BY updated_at DESC NULLS LAST, extracted DESC) = 1
            ), bought AS (
                SELECT user_id, order_id, order_date, CAST(total_amount AS DOUBLE) AS amount,
                    order_date > $d - {int(rfm.lookback_days)} AS in_window
                FROM latest WHERE status IN ({statuses}) AND order_date <= $d
            ), per_user AS (
                SELECT user_id, max(order_date) AS last_order_date, min(order_date) AS first_order_date,
                    CAST(date_diff('day', max(order_date), $d) AS INTEGER) AS recency_days,
                    count(order_id) FILTER (in_window) AS frequency,
                    spark_round2(coalesce(sum(amount) FILTER (in_window), 0.0)) AS monetary
                FROM bought GROUP BY user_id
            )
            SELECT *, CASE WHEN frequency > 0 THEN spark_round2(monetary / frequency) END AS avg_order_value
            FROM per_user""",
            {"d": as_of},
        )
        population = con.execute("SELECT count(*) FROM metrics WHERE frequency > 0").fetchone()[0]
        method = rfm.scoring.method
        if method == "quantile" and population < rfm.scoring.min_population_for_quantiles:
            method = "fixed"
        if method == "quantile":
            scores = [_quantile("recency_days", False), _quantile("frequency", True), _quantile("monetary", True)]
        else:
            fixed = rfm.scoring.fixed
            scores = [
                _fixed("recency_days", fixed.recency_days, lower_is_better=True),
                _fixed("frequency", fixed.frequency),
                _fixed("monetary", fixed.monetary),
            ]
        frame = con.execute(
            f"""WITH active AS (
                SELECT *, {scores[0]} AS r_score, {scores[1]} AS f_score, {scores[2]} AS m_score
                FROM (SELECT *, count(*) OVER () AS n FROM metrics WHERE frequency > 0)
            ), scored AS (
                SELECT *, CAST(floor((f_score + m_score) / 2 + 0.5) AS INTEGER) AS fm_score FROM active
            )
            SELECT $d AS snapshot_date, user_id, recency_days, frequency, monetary, avg_order_value,
                r_score, f_score, m_score, fm_score, {_group(rfm)} AS rfm_group, '{method}' AS scoring_method,
                first_order_date, last_order_date
            FROM scored
            UNION ALL
            SELECT $d, user_id, recency_days, frequency, monetary, avg_order_value,
                NULL, NULL, NULL, NULL, 'Lost', 'inactive', first_order_date, last_order_date
            FROM metrics WHERE frequency = 0
            ORDER BY user_id""",
            {"d": as_of},
        ).df()
    finally:
        con.close()
    return frame[list(RFM_COLUMNS)]
