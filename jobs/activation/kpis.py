"""The shop's daily KPIs for a date D: ``mart_kpi_daily`` (one row per date) and traffic by
source ``mart_traffic_daily`` (one row per date and ``utm_source``); definitions are the
tables' comments in ``sql/warehouse/schema_kpis.yml``, day-over-day and week-over-week changes
the view ``v_kpi_daily``.

Sessions, visitors and the product view -> cart -> checkout funnel need per-event data: D's
clean events (published batches, bots left out, anonymous visitors kept) are reduced in Spark
to one row per session and then per traffic source; only those aggregates leave Spark.
Everything the warehouse holds (orders, customers, active customers) is computed in SQL
(``sql/marts/mart_kpi_daily.sql``) inside the publish transaction, after D's traffic rows are
written, so the KPI row's session counts are exactly the sum of D's traffic rows.

One transaction replaces D's rows in both tables; a date without orders or events publishes
zeros, with null rates (a rate whose denominator is 0 is null). Orders count with their latest
known status, so re-building a date later restates it (e.g. refunds that happened since).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import pyarrow as pa
import sqlalchemy as sa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import UpstreamNotReadyError
from jobs.platform.interface import PAID_STATUSES, PURCHASE_STATUSES
from jobs.platform.published import published_batches, published_events
from jobs.platform.warehouse import count_where, delete_where, read_sql, to_arrow

log = logging.getLogger(__name__)

NO_SOURCE = "(none)"  # utm_source of sessions that arrived without one
SESSION_EVENT_SCHEMA = (
    "session_id string, user_id long, anonymous_id string, event_type string, event_at timestamp, utm_source string"
)
# Funnel steps: a session reaches a step when it has at least one event of that type.
FUNNEL_EVENTS = {
    "has_product_view": "product_view",
    "has_cart": "add_to_cart",
    "has_checkout": "checkout_start",
}
TRAFFIC_COLUMNS = (
    "kpi_date", "utm_source", "session_count", "visitor_count", "event_count", "product_view_session_count",
    "cart_session_count", "checkout_session_count", "abandoned_cart_session_count", "loaded_at",
)  # fmt: skip
HEADLINE = ("net_sales_amount", "order_count", "paying_customer_count", "new_customer_count", "session_count")


def sessions_of(events: DataFrame) -> DataFrame:
    """One row per session: its traffic source (the first non-null ``utm_source`` of its events,
    else ``(none)``), its visitor (the customer when any event is identified, else the
    anonymous id), its event count and which funnel steps it reached."""
    first_source = F.min(F.when(F.col("utm_source").isNotNull(), F.struct("event_at", "utm_source")))
    visitor = F.coalesce(
        F.concat(F.lit("user:"), F.max("user_id").cast("string")),
        F.concat(F.lit("anonymous:"), F.min("anonymous_id")),
    )
    steps = [F.bool_or(F.col("event_type") == event_type).alias(step) for step, event_type in FUNNEL_EVENTS.items()]
    return events.groupBy("session_id").agg(
        F.coalesce(first_source["utm_source"], F.lit(NO_SOURCE)).alias("utm_source"),
        visitor.alias("visitor_id"),
        F.count("*").alias("event_count"),
        *steps,
    )


def traffic_by_source(sessions: DataFrame) -> DataFrame:
    """Sessions, visitors, events and funnel sessions per traffic source (``sessions``: see
    :func:`sessions_of`); a cart is abandoned when its session has no checkout start."""
    return sessions.groupBy("utm_source").agg(
        F.count("*").alias("session_count"),
        F.countDistinct("visitor_id").alias("visitor_count"),
        F.sum("event_count").alias("event_count"),
        F.count(F.when(F.col("has_product_view"), 1)).alias("product_view_session_count"),
        F.count(F.when(F.col("has_cart"), 1)).alias("cart_session_count"),
        F.count(F.when(F.col("has_checkout"), 1)).alias("checkout_session_count"),
        F.count(F.when(F.col("has_cart") & ~F.col("has_checkout"), 1)).alias("abandoned_cart_session_count"),
    )


def insert_kpi_row(conn: sa.Connection, schema: str, day: date, loaded_at: datetime) -> None:
    """Replace D's ``mart_kpi_daily`` row from the warehouse (``sql/marts/mart_kpi_daily.sql``);
    D's ``mart_traffic_daily`` rows must already be written on ``conn``."""
    delete_where(conn, schema, "mart_kpi_daily", "kpi_date = :d", {"d": day})
    params = {
        "d": day,
        "loaded_at": loaded_at,
        "purchase_statuses": list(PURCHASE_STATUSES),
        "paid_statuses": list(PAID_STATUSES),
    }
    lists = [sa.bindparam(name, expanding=True) for name in ("purchase_statuses", "paid_statuses")]
    for statement in read_sql("mart_kpi_daily.sql", schema):
        conn.execute(sa.text(statement).bindparams(*lists), params)


def _check_covered(config: PipelineConfig, day: date) -> set[date]:
    """Published batches, refusing a date no published batch covers yet: a batch carries
    everything known up to its date, so D is covered once a batch on or after D is published
    (a date before the shop's history is covered, and simply empty)."""
    from jobs.platform.ops import warehouse_engine

    with warehouse_engine(config).connect() as conn:
        batches = published_batches(conn, config.warehouse.schema_name)
    if not any(batch >= day for batch in batches):
        latest = max(batches).isoformat() if batches else "none"
        raise UpstreamNotReadyError(
            f"{day}: no published batch on or after that date yet (latest published: {latest}); "
            f"the KPIs of a date are built once its load succeeded (marketing run --date {day})"
        )
    return batches


def publish_kpis(config: PipelineConfig, day: date, traffic: pa.Table, loaded_at: datetime) -> dict[str, int]:
    """Publish D's traffic rows (``TRAFFIC_COLUMNS``) and, from them and the warehouse, D's
    KPI row: one transaction that replaces D's rows in both tables and records the run."""
    from jobs.platform.publish import Output, check_held, publish

    schema = config.warehouse.schema_name

    def kpi_row(conn: sa.Connection) -> dict[str, int]:
        insert_kpi_row(conn, schema, day, loaded_at)
        held = count_where(conn, schema, "mart_kpi_daily", "kpi_date = :d", {"d": day})
        check_held("mart_kpi_daily", 1, held)
        return {"mart_kpi_daily": held}

    return publish(
        config,
        day,
        "kpis",
        "mart_kpi_daily",
        [Output("mart_traffic_daily", traffic, where="kpi_date = :d")],
        rows_in=sum(traffic.column("session_count").to_pylist()),
        details={"sources": traffic.column("utm_source").to_pylist()},
        then=kpi_row,
    )


def build_kpis(config: PipelineConfig, as_of: date) -> dict:
    """Compute and publish D's ``mart_traffic_daily`` rows and ``mart_kpi_daily`` row (one
    transaction, replacing D's rows); return the headline numbers."""
    from jobs.platform.ops import warehouse_engine

    batches = _check_covered(config, as_of)
    loaded_at = datetime.now(timezone.utc)
    sessions = sessions_of(published_events(config, batches, as_of, 1, anonymous=True, schema=SESSION_EVENT_SCHEMA))
    traffic = to_arrow(
        traffic_by_source(sessions)
        .withColumn("kpi_date", F.lit(as_of))
        .withColumn("loaded_at", F.lit(loaded_at))
        .select(*TRAFFIC_COLUMNS)
        .orderBy("utm_source")
    )
    rows = publish_kpis(config, as_of, traffic, loaded_at)
    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        row = (
            conn.execute(
                sa.text(f"select {', '.join(HEADLINE)} from {schema}.mart_kpi_daily where kpi_date = :d"), {"d": as_of}
            )
            .mappings()
            .one()
        )
    kpis = {name: float(value) if name.endswith("_amount") else int(value) for name, value in row.items()}
    log.info("%s kpis: %s", as_of, kpis)
    return {"kpi_date": as_of.isoformat(), "rows_by_table": rows, "kpis": kpis}
