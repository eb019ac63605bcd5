"""Clean the source-table extracts (Spark): users, products, orders, order_items, suppressions.

Each extract of logical date D is normalised, checked and de-duplicated (latest ``updated_at``
per key wins, so a late status change in a later extract supersedes the earlier state).
Rejected rows go to quarantine with their original values as JSON and a reason:

    missing_required_field, invalid_enum, invalid_amount, invalid_value,
    unknown_user_id, unknown_product_id, unknown_order_id, parent_quarantined

Email and phone leave this stage only as keyed hashes; the clear values are written to the
restricted zone (``restricted/users_pii``) for consented exports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import PublishMismatchError, UpstreamNotReadyError
from jobs.platform.interface import (
    CHANNEL_ALIASES,
    CHANNELS,
    OPTIONAL_SOURCE_COLUMNS,
    ORDER_STATUSES,
    ORDER_TYPES,
    PRODUCT_TYPES,
    SUPPRESSION_CHANNELS,
    SUPPRESSION_REASONS,
)
from jobs.platform.lake import (
    clean_source_prefix,
    has_parquet,
    lake_storage,
    quarantine_prefix,
    raw_source_prefix,
    read_json,
    restricted_prefix,
    run_record_key,
    spark_uri,
    write_json,
)
from jobs.platform.ops import record_and_reconcile
from jobs.platform.published import latest_per_key

log = logging.getLogger(__name__)

GENDERS = ("F", "M", "U")


@dataclass(frozen=True)
class Check:
    reason: str
    failed: Column  # true when the row breaks the rule
    detail: Column = field(default_factory=lambda: F.lit(None).cast("string"))


def _ts(name: str) -> Column:
    return F.col(name).cast("timestamp").alias(name)


def _missing(*names: str) -> Check:
    blank = [F.when(F.col(n).isNull() | (F.trim(F.col(n).cast("string")) == ""), F.lit(n)) for n in names]
    joined = F.concat_ws(",", *blank)
    return Check("missing_required_field", joined != "", joined)


def normalise_users(raw: DataFrame) -> DataFrame:
    raw = with_optional(raw, "users")
    gender = F.upper(F.substring(F.trim("gender"), 1, 1))
    return raw.select(
        F.col("user_id").cast("bigint").alias("user_id"),
        F.nullif(F.trim("customer_code"), F.lit("")).alias("customer_code"),
        _ts("signup_at"),
        F.when(gender.isin(*GENDERS), gender).otherwise(F.lit("U")).alias("gender"),
        F.col("birth_year").cast("int").alias("birth_year"),
        F.initcap(F.trim("region")).alias("region"),
        F.initcap(F.trim("city")).alias("city"),
        F.nullif(F.lower(F.trim("email")), F.lit("")).alias("email"),
        F.nullif(F.regexp_replace("phone", r"[^0-9+]", ""), F.lit("")).alias("phone"),
        F.coalesce(F.col("consent_email").cast("boolean"), F.lit(False)).alias("consent_email"),
        F.coalesce(F.col("consent_sms").cast("boolean"), F.lit(False)).alias("consent_sms"),
        F.coalesce(F.col("consent_push").cast("boolean"), F.lit(False)).alias("consent_push"),
        _ts("updated_at"),
    )


def with_optional(raw: DataFrame, table: str) -> DataFrame:
    """``raw`` with every optional interface column it lacks, as its default."""
    for name, default in OPTIONAL_SOURCE_COLUMNS.get(table, {}).items():
        if name not in raw.columns:
            raw = raw.withColumn(name, F.lit(default).cast("string"))
    return raw


def product_type(rules) -> Column:
    """The source's product type (lower case; blank means merchandise) or, for merchandise, the
    first configured non-merchandise rule whose sku or name pattern matches the whole value."""
    given = F.coalesce(F.nullif(F.lower(F.trim("product_type")), F.lit("")), F.lit("merchandise"))
    typed = None
    for rule in rules:
        matched = F.lit(False)
        for column, pattern in (("sku", rule.sku), ("name", rule.name)):
            if pattern is not None:
                matched = matched | F.coalesce(F.trim(column).rlike(f"(?i)^(?:{pattern})$"), F.lit(False))
        typed = F.when(matched, F.lit(rule.type)) if typed is None else typed.when(matched, F.lit(rule.type))
    if typed is None:
        return given
    return F.when(given != "merchandise", given).otherwise(typed.otherwise(given))


def normalise_products(raw: DataFrame, rules=()) -> DataFrame:
    raw = with_optional(raw, "products")
    kind = product_type(rules)
    return raw.select(
        F.col("product_id").cast("bigint").alias("product_id"),
        F.nullif(F.trim("sku"), F.lit("")).alias("sku"),
        F.trim("name").alias("product_name"),
        F.lower(F.trim("category_l1")).alias("category_l1"),
        F.lower(F.trim("category_l2")).alias("category_l2"),
        F.trim("brand").alias("brand"),
        F.col("price").cast("decimal(12,2)").alias("price"),
        F.coalesce(F.col("is_active").cast("boolean"), F.lit(True)).alias("is_active"),
        kind.alias("product_type"),
        (kind == "merchandise").alias("is_merchandise"),
        _ts("updated_at"),
    )


def channel(column: str) -> Column:
    """Lower-cased channel with the interface's aliases (``pos`` is ``store``...) resolved."""
    value = F.regexp_replace(F.lower(F.trim(column)), r"[\s-]+", "_")
    aliases = None
    for alias, name in CHANNEL_ALIASES.items():
        aliases = F.when(value == alias, F.lit(name)) if aliases is None else aliases.when(value == alias, F.lit(name))
    return aliases.otherwise(value)


def normalise_orders(raw: DataFrame, tz: str, large_amount: float = 10_000) -> DataFrame:
    """A blank customer is a guest order; a local-time-zone ``created_at`` is the source's job
    (the file source converts naive local times to UTC before this)."""
    raw = with_optional(raw, "orders")
    order_type = F.coalesce(F.nullif(F.lower(F.trim("order_type")), F.lit("")), F.lit("sale"))
    total = F.col("total_amount").cast("decimal(14,2)")
    return raw.select(
        F.col("order_id").cast("bigint").alias("order_id"),
        F.col("user_id").cast("bigint").alias("user_id"),
        F.col("user_id").isNull().alias("is_guest"),
        order_type.alias("order_type"),
        F.col("original_order_id").cast("bigint").alias("original_order_id"),
        F.nullif(F.trim("order_number"), F.lit("")).alias("order_number"),
        F.lower(F.trim("status")).alias("status"),
        _ts("created_at"),
        _ts("paid_at"),
        F.to_date(F.from_utc_timestamp(F.col("created_at").cast("timestamp"), tz)).alias("order_date"),
        F.col("total_amount").cast("decimal(14,2)").alias("total_amount"),
        F.coalesce(F.col("discount_amount").cast("decimal(14,2)"), F.lit(0).cast("decimal(14,2)")).alias(
            "discount_amount"
        ),
        F.nullif(F.upper(F.trim("coupon_code")), F.lit("")).alias("coupon_code"),
        channel("channel").alias("channel"),
        (F.abs(total) > F.lit(large_amount)).alias("is_large_order"),
        _ts("updated_at"),
    )


def normalise_order_items(raw: DataFrame, large_quantity: int = 1_000) -> DataFrame:
    """Quantities are negative on a credit note's lines; ``is_bulk_line`` flags wholesale ones."""
    quantity = F.col("quantity").cast("int")
    unit_price = F.col("unit_price").cast("decimal(12,2)")
    return raw.select(
        F.col("order_id").cast("bigint").alias("order_id"),
        F.col("line_no").cast("int").alias("line_no"),
        F.col("product_id").cast("bigint").alias("product_id"),
        quantity.alias("quantity"),
        unit_price.alias("unit_price"),
        (quantity * unit_price).cast("decimal(14,2)").alias("line_amount"),
        (F.abs(quantity) > F.lit(large_quantity)).alias("is_bulk_line"),
        _ts("updated_at"),
    )


def normalise_suppressions(raw: DataFrame) -> DataFrame:
    """The source's ``reason`` becomes ``suppression_reason``: ``reason`` names the quarantine
    reason of a rejected row here (and is the warehouse column's name again on load)."""
    return raw.select(
        F.col("user_id").cast("bigint").alias("user_id"),
        F.lower(F.trim("channel")).alias("channel"),
        F.lower(F.trim("reason")).alias("suppression_reason"),
        _ts("suppressed_at"),
        _ts("updated_at"),
    )


def apply_checks(frame: DataFrame, checks: list[Check]) -> DataFrame:
    """Attach ``reason``/``detail`` from the first failing check (null when all pass)."""
    reason, detail = None, None
    for check in checks:
        failed = F.coalesce(check.failed, F.lit(False))
        reason = F.when(failed, F.lit(check.reason)) if reason is None else reason.when(failed, F.lit(check.reason))
        detail = F.when(failed, check.detail) if detail is None else detail.when(failed, check.detail)
    return frame.withColumn("reason", reason).withColumn("detail", detail)


def _mark_unknown(frame: DataFrame, column: str, known: DataFrame | None, flag: str) -> DataFrame:
    """Add boolean ``flag``: the row's ``column`` is set but absent from ``known``."""
    if known is None:
        return frame.withColumn(flag, F.col(column).isNotNull())
    keys = known.select(F.col(column).alias(f"_{flag}_key")).distinct()
    joined = frame.join(keys, frame[column] == keys[f"_{flag}_key"], "left")
    return joined.withColumn(flag, F.col(column).isNotNull() & F.col(f"_{flag}_key").isNull()).drop(f"_{flag}_key")


def _known_keys(spark: SparkSession, config: PipelineConfig, table: str, key: str, day: date):
    """Keys of ``table`` cleaned in any extract up to and including D (None if none yet)."""
    lake = lake_storage(config)
    if not has_parquet(lake, clean_source_prefix(table)):
        return None
    return (
        spark.read.parquet(spark_uri(lake, clean_source_prefix(table)))
        .where(F.col("extract_date") <= F.lit(day))
        .select(key)
    )


def _order_attributes(spark: SparkSession, config: PipelineConfig, day: date) -> DataFrame:
    """Customer, order date and type of every order known by D (its latest clean version), so
    each order line carries them into the warehouse (the type only to check its quantity)."""
    orders = _latest_clean(spark, config, "orders", "order_id", day, {"order_type": "sale"})
    if orders is None:
        return spark.createDataFrame([], "order_id long, user_id long, order_date date, _order_type string")
    return orders.select("order_id", "user_id", "order_date", F.col("order_type").alias("_order_type"))


def _latest_clean(
    spark: SparkSession, config: PipelineConfig, table: str, key: str, day: date, defaults: dict
) -> DataFrame | None:
    """Latest clean version (by D) of every row of ``table``, with ``defaults`` for columns that
    batches cleaned before they joined the interface lack; None before the first clean batch."""
    lake = lake_storage(config)
    if not has_parquet(lake, clean_source_prefix(table)):
        return None
    frame = spark.read.option("mergeSchema", "true").parquet(spark_uri(lake, clean_source_prefix(table)))
    frame = frame.where(F.col("extract_date") <= F.lit(day))
    for name, value in defaults.items():
        frame = frame.withColumn(name, F.coalesce(F.col(name), F.lit(value)) if name in frame.columns else F.lit(value))
    return latest_per_key(frame, [key])[0]


def _product_kinds(spark: SparkSession, config: PipelineConfig, day: date) -> DataFrame:
    """``product_id, _is_merchandise`` of every product known by D."""
    products = _latest_clean(spark, config, "products", "product_id", day, {"is_merchandise": True})
    if products is None:
        return spark.createDataFrame([], "product_id long, _is_merchandise boolean")
    return products.select("product_id", F.col("is_merchandise").alias("_is_merchandise"))


def _quarantined_keys(spark: SparkSession, config: PipelineConfig, table: str, day: date):
    lake = lake_storage(config)
    prefix = f"quarantine/{table}/"
    if not has_parquet(lake, prefix):
        return None
    return (
        spark.read.parquet(spark_uri(lake, prefix))
        .where(F.col("batch_date") <= F.lit(day))
        .select(F.get_json_object("payload", "$.order_id").cast("bigint").alias("order_id"))
    )


def _hash_udf(key: bytes):
    """A vectorised HMAC of a string column (Spark has no keyed hash built in)."""
    from pyspark.sql.functions import pandas_udf

    from jobs.ingest.pii import keyed_hash

    @pandas_udf("string")
    def hash_values(values: pd.Series) -> pd.Series:
        return values.map(lambda v: keyed_hash(key, v) if isinstance(v, str) else None)

    return hash_values


def clean_sources(config: PipelineConfig, logical_date: date) -> dict:
    """Clean every source extract of D; write clean deltas, quarantine and restricted PII."""
    from jobs.ingest.pii import hash_key
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    lake = lake_storage(config)
    tz = config.shop.timezone
    results: dict[str, dict] = {}

    def raw(table: str) -> DataFrame:
        prefix = raw_source_prefix(table, logical_date)
        if not lake.exists(prefix + "_manifest.json"):
            raise UpstreamNotReadyError(
                f"no raw extract of {table} for {logical_date} at {lake.uri(prefix)}: run collect first"
            )
        # the parts its manifest lists: a part an interrupted extract left behind is not data
        parts = read_json(lake, prefix + "_manifest.json")["parts"]
        return spark.read.parquet(*(spark_uri(lake, prefix + part) for part in parts))

    # users
    users = normalise_users(raw("users"))
    users = apply_checks(
        users,
        [
            _missing("user_id", "signup_at", "updated_at"),
            Check(
                "invalid_value",
                F.col("birth_year").isNotNull()
                & ((F.col("birth_year") < 1900) | (F.col("birth_year") > logical_date.year)),
                F.concat(F.lit("birth_year="), F.col("birth_year").cast("string")),
            ),
        ],
    )
    hasher = _hash_udf(hash_key(config))
    users_split = _finish(
        "users",
        users,
        ["user_id"],
        lambda df: (
            df.withColumn("email_hash", hasher("email"))
            .withColumn("phone_hash", hasher("phone"))
            .withColumn("has_email", F.col("email").isNotNull())
            .withColumn("has_phone", F.col("phone").isNotNull())
            .drop("email", "phone")
        ),
        lambda df: df.select("user_id", "email", "phone", "consent_email", "consent_sms", "consent_push", "updated_at"),
        # quarantine is not the restricted zone: rejected users keep email/phone only as hashes
        lambda df: (
            df.withColumn("email_hash", hasher("email"))
            .withColumn("phone_hash", hasher("phone"))
            .drop("email", "phone")
        ),
    )
    results["users"] = _write(spark, config, "users", logical_date, users_split)

    # products
    products = apply_checks(
        normalise_products(raw("products"), config.clean.non_merchandise),
        [
            _missing("product_id", "product_name", "category_l1", "price", "updated_at"),
            Check(
                "invalid_enum",
                ~F.col("product_type").isin(*PRODUCT_TYPES),
                F.concat(F.lit("product_type="), F.col("product_type")),
            ),
            # a bad-debt write-off or a voucher may be priced below 0; goods may not
            Check("invalid_amount", (F.col("price") < 0) & F.col("is_merchandise"), F.col("price").cast("string")),
        ],
    )
    results["products"] = _write(spark, config, "products", logical_date, _finish("products", products, ["product_id"]))

    # orders
    known_users = _known_keys(spark, config, "users", "user_id", logical_date)
    orders = normalise_orders(raw("orders"), tz, config.clean.large_order_amount)
    orders = _mark_unknown(orders, "user_id", known_users, "_unknown_user")  # a guest (no customer) is known
    max_amount = config.clean.max_order_amount
    is_return = F.col("order_type") == "return"
    orders = apply_checks(
        orders,
        [
            _missing("order_id", "status", "created_at", "total_amount", "updated_at"),
            Check("invalid_enum", ~F.col("status").isin(*ORDER_STATUSES), F.concat(F.lit("status="), F.col("status"))),
            Check(
                "invalid_enum",
                ~F.col("order_type").isin(*ORDER_TYPES),
                F.concat(F.lit("order_type="), F.col("order_type")),
            ),
            Check(
                "invalid_enum",
                F.col("channel").isNotNull() & ~F.col("channel").isin(*CHANNELS),
                F.concat(F.lit("channel="), F.col("channel")),
            ),
            # a sale's total is 0 or more, a credit note's 0 or less; beyond max_order_amount is impossible
            Check(
                "invalid_amount",
                F.when(is_return, F.col("total_amount") > 0).otherwise(F.col("total_amount") < 0)
                | (F.abs(F.col("total_amount")) > max_amount)
                | (F.col("discount_amount") < 0),
                F.concat(F.col("order_type"), F.lit(" total_amount="), F.col("total_amount").cast("string")),
            ),
            Check(
                "invalid_value",
                F.col("original_order_id").isNotNull() & ~is_return,
                F.concat(F.lit("original_order_id="), F.col("original_order_id").cast("string"), F.lit(" on a sale")),
            ),
            Check("unknown_user_id", F.col("_unknown_user"), F.col("user_id").cast("string")),
        ],
    ).drop("_unknown_user")
    results["orders"] = _write(spark, config, "orders", logical_date, _finish("orders", orders, ["order_id"]))

    # order_items
    known_products = _known_keys(spark, config, "products", "product_id", logical_date)
    known_orders = _known_keys(spark, config, "orders", "order_id", logical_date)
    quarantined_orders = _quarantined_keys(spark, config, "orders", logical_date)
    items = normalise_order_items(raw("order_items"), config.clean.large_item_quantity)
    attributes = _order_attributes(spark, config, logical_date)
    items = items.join(attributes.select("order_id", "_order_type"), "order_id", "left").join(
        _product_kinds(spark, config, logical_date), "product_id", "left"
    )
    items = _mark_unknown(items, "product_id", known_products, "_unknown_product")
    items = _mark_unknown(items, "order_id", known_orders, "_unknown_order")
    if quarantined_orders is not None:
        items = _mark_unknown(items, "order_id", quarantined_orders, "_not_in_quarantine")
        parent_bad = F.col("_unknown_order") & ~F.col("_not_in_quarantine")
    else:
        items = items.withColumn("_not_in_quarantine", F.lit(True))
        parent_bad = F.lit(False)
    items = apply_checks(
        items,
        [
            _missing("order_id", "line_no", "product_id", "quantity", "unit_price", "updated_at"),
            # a sale's lines have quantities above 0, a credit note's below 0 (its order's type;
            # the order may be unknown, then the line is quarantined below for that)
            Check(
                "invalid_value",
                (F.col("quantity") == 0)
                | ((F.col("_order_type") == "sale") & (F.col("quantity") < 0))
                | ((F.col("_order_type") == "return") & (F.col("quantity") > 0))
                | (F.abs(F.col("quantity")) > config.clean.max_item_quantity)
                | (F.col("line_no") <= 0),
                F.concat(
                    F.lit("quantity="),
                    F.col("quantity").cast("string"),
                    F.lit(" on a "),
                    F.coalesce(F.col("_order_type"), F.lit("unknown order")),
                ),
            ),  # fmt: skip
            Check(
                "invalid_amount",
                (F.col("unit_price") < 0) & F.coalesce(F.col("_is_merchandise"), F.lit(True)),
                F.concat(F.lit("unit_price="), F.col("unit_price").cast("string"), F.lit(" on merchandise")),
            ),
            Check("parent_quarantined", parent_bad, F.col("order_id").cast("string")),
            Check("unknown_order_id", F.col("_unknown_order"), F.col("order_id").cast("string")),
            Check("unknown_product_id", F.col("_unknown_product"), F.col("product_id").cast("string")),
        ],
    ).drop("_unknown_product", "_unknown_order", "_not_in_quarantine", "_order_type", "_is_merchandise")
    results["order_items"] = _write(
        spark,
        config,
        "order_items",
        logical_date,
        _finish(
            "order_items",
            items,
            ["order_id", "line_no"],
            clean_transform=lambda df: df.join(attributes.drop("_order_type"), "order_id", "left"),
        ),
    )

    # suppressions: of users known by D, like orders
    suppressions = _mark_unknown(normalise_suppressions(raw("suppressions")), "user_id", known_users, "_unknown_user")
    suppressions = apply_checks(
        suppressions,
        [
            _missing("user_id", "channel", "suppression_reason", "suppressed_at", "updated_at"),
            Check(
                "invalid_enum",
                ~F.col("channel").isin(*SUPPRESSION_CHANNELS),
                F.concat(F.lit("channel="), F.col("channel")),
            ),
            Check(
                "invalid_enum",
                ~F.col("suppression_reason").isin(*SUPPRESSION_REASONS),
                F.concat(F.lit("reason="), F.col("suppression_reason")),
            ),
            Check("unknown_user_id", F.col("_unknown_user"), F.col("user_id").cast("string")),
        ],
    ).drop("_unknown_user")
    results["suppressions"] = _write(
        spark, config, "suppressions", logical_date, _finish("suppressions", suppressions, ["user_id", "channel"])
    )
    return {"logical_date": logical_date.isoformat(), "tables": results}


@dataclass
class _Split:
    input: DataFrame
    clean: DataFrame
    quarantine: DataFrame
    duplicates: DataFrame
    restricted: DataFrame | None = None


def _finish(
    table: str,
    checked: DataFrame,
    keys: list[str],
    clean_transform: Callable[[DataFrame], DataFrame] | None = None,
    restricted_transform: Callable[[DataFrame], DataFrame] | None = None,
    quarantine_transform: Callable[[DataFrame], DataFrame] | None = None,
) -> _Split:
    """Split checked rows into clean (latest per key), duplicates and quarantine."""
    checked = checked.persist()
    valid = checked.where(F.col("reason").isNull()).drop("reason", "detail")
    latest, duplicates = latest_per_key(valid, keys)
    rejected = checked.where(F.col("reason").isNotNull())
    if quarantine_transform:
        rejected = quarantine_transform(rejected)
    payload_cols = [c for c in rejected.columns if c not in ("reason", "detail") and not c.startswith("_")]
    quarantine = rejected.select(
        F.to_json(F.struct(*payload_cols)).alias("payload"),
        F.lit(f"clean_{table}").alias("stage"),
        "reason",
        "detail",
    )
    restricted = restricted_transform(latest) if restricted_transform else None
    clean = clean_transform(latest) if clean_transform else latest
    return _Split(checked, clean, quarantine, duplicates, restricted)


# Facts about the clean rows counted in each table's run record (legal rows worth knowing about)
FLAGS = {
    "products": {"non_merchandise": "not is_merchandise"},
    "orders": {
        "guest_orders": "is_guest",
        "returns": "order_type = 'return'",
        "large_orders": "is_large_order",
        "zero_total_orders": "total_amount = 0",
    },
    "order_items": {
        "bulk_lines": "is_bulk_line",
        "zero_price_lines": "unit_price = 0",
        "negative_price_lines": "unit_price < 0",
        "return_lines": "quantity < 0",
    },
}


def _write(spark: SparkSession, config: PipelineConfig, table: str, day: date, split: _Split) -> dict:
    """Write clean, quarantine (and restricted) outputs of one table, record and reconcile."""
    lake = lake_storage(config)
    split.clean.write.mode("overwrite").parquet(spark_uri(lake, clean_source_prefix(table, day)))
    split.quarantine.coalesce(1).write.mode("overwrite").parquet(spark_uri(lake, quarantine_prefix(table, day)))
    if split.restricted is not None:
        split.restricted.write.mode("overwrite").parquet(spark_uri(lake, restricted_prefix(f"{table}_pii", day)))
    manifest = read_json(lake, raw_source_prefix(table, day) + "_manifest.json")
    # Clean and quarantined rows are counted back from the files just written, so a write that
    # kept fewer rows fails the reconciliation below instead of passing unnoticed.
    written = spark.read.parquet(spark_uri(lake, quarantine_prefix(table, day)))
    by_reason = {r["reason"]: r["count"] for r in written.groupBy("reason").count().collect()}
    clean = spark.read.parquet(spark_uri(lake, clean_source_prefix(table, day)))
    facts = (
        clean.agg(
            F.count("*").alias("_clean"),
            *(F.count(F.when(F.expr(flag), 1)).alias(name) for name, flag in FLAGS.get(table, {}).items()),
        )
        .first()
        .asDict()
    )
    counts = {
        "input": int(manifest["row_count"]),
        "clean": facts.pop("_clean"),
        "quarantined": sum(by_reason.values()),
        "duplicates": split.duplicates.count(),
    }
    if split.restricted is not None:  # one restricted row per clean row
        restricted = spark.read.parquet(spark_uri(lake, restricted_prefix(f"{table}_pii", day))).count()
        if restricted != counts["clean"]:
            raise PublishMismatchError(
                f"{table} {day}: {counts['clean']:,} clean rows but {restricted:,} rows in "
                f"{lake.uri(restricted_prefix(f'{table}_pii', day))}; re-run clean_sources"
            )
    split.input.unpersist()
    record = {
        "stage": "clean",
        "dataset": table,
        "logical_date": day.isoformat(),
        "counts": counts,
        "quarantined_by_reason": by_reason,
    }
    if facts:
        record["flagged"] = facts
    write_json(lake, run_record_key("clean", table, day), record)
    record_and_reconcile(config, record)
    return record
