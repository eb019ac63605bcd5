"""Collect: bring the day's inputs into the raw zone, unchanged and accounted for.

Events: the landing files written during logical date D's window, plus files that arrived late
in earlier days' folders (within ``collect.lookback_days``) and were not collected yet, are
copied byte for byte to ``raw/events/batch_date=D/`` with a manifest (file, size, sha256, line
count). A file belongs to exactly one batch: re-running D collects the same files again and
never a file another batch already holds.

Source tables: rows with ``updated_at`` in ``(watermark - overlap, end of D]`` are extracted
through SQLAlchemy into Parquet under ``raw/source/<table>/extract_date=D/``. The watermark is
the upper bound of the latest earlier extract, read from its manifest, so a re-run of D extracts
the same window. ``collect.full_reload`` (or ``full_reload=True``) extracts everything up to D.
"""

from __future__ import annotations

import gzip
import logging
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError
from jobs.platform.lake import (
    SOURCE_TABLES,
    lake_storage,
    landing_hour_prefix,
    landing_storage,
    raw_events_prefix,
    raw_source_prefix,
    read_json,
    window_for,
    write_json,
)
from jobs.platform.ops import record_stage, warehouse_engine
from jobs.platform.storage import Storage, sha256_hex

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"


def _count_lines(data: bytes, key: str) -> int:
    payload = gzip.decompress(data) if key.endswith(".gz") else data
    if not payload:
        return 0
    return payload.count(b"\n") + (0 if payload.endswith(b"\n") else 1)


def _claimed_elsewhere(lake: Storage, day: date, lookback: int) -> set[str]:
    """Landing keys already held by another batch that could have collected them."""
    claimed: set[str] = set()
    for offset in range(-lookback, lookback + 1):
        other = day + timedelta(days=offset)
        key = raw_events_prefix(other) + MANIFEST
        if offset == 0 or not lake.exists(key):
            continue
        claimed.update(entry["key"] for entry in read_json(lake, key)["files"])
    return claimed


def collect_events(config: PipelineConfig, logical_date: date) -> dict:
    """Copy D's landing files (and late files of earlier days) into the raw zone."""
    landing, lake = landing_storage(config), lake_storage(config)
    lookback = config.collect.lookback_days
    claimed = _claimed_elsewhere(lake, logical_date, lookback)

    candidates = []
    for offset in range(lookback, -1, -1):
        window = window_for(logical_date - timedelta(days=offset), config.tz)
        for hour in window.utc_hours():
            for info in landing.list(landing_hour_prefix(hour)):
                if info.key.endswith((".jsonl.gz", ".jsonl")) and info.key not in claimed:
                    candidates.append((offset, info))

    prefix = raw_events_prefix(logical_date)
    lake.delete_prefix(prefix)
    files = []
    for offset, info in candidates:
        data = landing.read_bytes(info.key)
        lake.write_bytes(prefix + info.key, data)
        files.append(
            {
                "key": info.key,
                "raw_key": prefix + info.key,
                "size_bytes": len(data),
                "sha256": sha256_hex(data),
                "line_count": _count_lines(data, info.key),
                "is_late_arrival": offset > 0,
            }
        )
    manifest = {
        "logical_date": logical_date.isoformat(),
        "collected_at": datetime.now(UTC).isoformat(),
        "landing_root": landing.root,
        "file_count": len(files),
        "line_count": sum(f["line_count"] for f in files),
        "byte_count": sum(f["size_bytes"] for f in files),
        "late_file_count": sum(f["is_late_arrival"] for f in files),
        "files": files,
    }
    write_json(lake, prefix + MANIFEST, manifest)
    record_stage(
        config,
        {
            "stage": "collect",
            "dataset": "events",
            "logical_date": logical_date.isoformat(),
            "counts": {"input": manifest["line_count"], "output": manifest["line_count"]},
            "files": manifest["file_count"],
            "late_files": manifest["late_file_count"],
            "bytes": manifest["byte_count"],
        },
    )
    log.info("collected %d event files (%d lines) for %s", len(files), manifest["line_count"], logical_date)
    return {k: v for k, v in manifest.items() if k != "files"}


def source_engine(config: PipelineConfig) -> sa.Engine:
    return sa.create_engine(config.source.url)


def _previous_watermark(config: PipelineConfig, table: str, logical_date: date) -> datetime | None:
    """Upper bound of the latest extract before D, from ``ops_source_watermarks``."""
    engine = warehouse_engine(config)
    target = f"{config.warehouse.schema_name}.ops_source_watermarks"
    with engine.connect() as conn:
        value = conn.execute(
            sa.text(f"select max(upper_bound_at) from {target} where table_name = :t and logical_date < :d"),
            {"t": table, "d": logical_date},
        ).scalar_one()
    engine.dispose()
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _save_watermark(config: PipelineConfig, manifest: dict) -> None:
    engine = warehouse_engine(config)
    target = f"{config.warehouse.schema_name}.ops_source_watermarks"
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"delete from {target} where table_name = :t and logical_date = :d"),
            {"t": manifest["table"], "d": date.fromisoformat(manifest["logical_date"])},
        )
        conn.execute(
            sa.text(
                f"insert into {target} (table_name, logical_date, lower_bound_at, upper_bound_at, "
                "row_count, is_full_reload, extracted_at) values (:t, :d, :lo, :hi, :n, :full, :at)"
            ),
            {
                "t": manifest["table"],
                "d": date.fromisoformat(manifest["logical_date"]),
                "lo": datetime.fromisoformat(manifest["lower_bound"]) if manifest["lower_bound"] else None,
                "hi": datetime.fromisoformat(manifest["upper_bound"]),
                "n": manifest["row_count"],
                "full": manifest["full_reload"],
                "at": datetime.fromisoformat(manifest["extracted_at"]),
            },
        )
    engine.dispose()


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def collect_sources(
    config: PipelineConfig, logical_date: date, full_reload: bool | None = None
) -> dict:
    """Incrementally extract every source table changed in D's window into raw Parquet."""
    lake = lake_storage(config)
    full_reload = config.collect.full_reload if full_reload is None else full_reload
    upper = window_for(logical_date, config.tz).end
    engine = source_engine(config)
    summary: dict[str, dict] = {}
    try:
        inspector = sa.inspect(engine)
        existing = set(inspector.get_table_names())
    except sa.exc.OperationalError as exc:
        reason = " ".join(str(exc.orig).split())  # drivers' messages span lines (psycopg)
        raise ConfigError(f"source.url: cannot connect to {engine.url!r}: {reason}") from exc
    for table_name in config.source.tables:
        if table_name not in existing:
            raise ConfigError(f"source.tables: table {table_name!r} not found in {engine.url!r}")
        previous = None if full_reload else _previous_watermark(config, table_name, logical_date)
        lower = previous - timedelta(minutes=config.collect.source_overlap_minutes) if previous else None
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        query = sa.select(table).where(table.c.updated_at <= _naive_utc(upper))
        if lower is not None:
            query = query.where(table.c.updated_at > _naive_utc(lower))
        prefix = raw_source_prefix(table_name, logical_date)
        lake.delete_prefix(prefix)
        rows = _extract_to_parquet(engine, query, lake, prefix)
        manifest = {
            "table": table_name,
            "logical_date": logical_date.isoformat(),
            "lower_bound": lower.isoformat() if lower else None,
            "upper_bound": upper.isoformat(),
            "full_reload": full_reload or previous is None,
            "row_count": rows,
            "extracted_at": datetime.now(UTC).isoformat(),
        }
        write_json(lake, prefix + MANIFEST, manifest)
        _save_watermark(config, manifest)
        summary[table_name] = {"rows": rows, "lower_bound": manifest["lower_bound"]}
    engine.dispose()
    return {"logical_date": logical_date.isoformat(), "tables": summary}


def _extract_to_parquet(
    engine: sa.Engine, query: sa.Select, lake: Storage, prefix: str, chunk_rows: int = 200_000
) -> int:
    """Stream the query result into Parquet parts of bounded size."""
    import io

    total, part = 0, 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        columns = list(result.keys())
        schema = _arrow_schema(query, columns)
        while True:
            chunk = result.fetchmany(chunk_rows)
            if not chunk and part > 0:
                break
            table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in chunk], schema=schema)
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            lake.write_bytes(f"{prefix}part-{part:05d}.parquet", buffer.getvalue())
            total += len(chunk)
            part += 1
            if not chunk:
                break
    return total


def _arrow_schema(query: sa.Select, columns: list[str]) -> pa.Schema:
    """Arrow types from the SQL types, so every part (even an empty one) has the same schema."""
    types = {col.name: col.type for col in query.selected_columns}
    fields = []
    for name in columns:
        sql_type = types[name]
        if isinstance(sql_type, (sa.Integer, sa.BigInteger, sa.SmallInteger)):
            arrow = pa.int64()
        elif isinstance(sql_type, sa.Boolean):
            arrow = pa.bool_()
        elif isinstance(sql_type, sa.DateTime):
            arrow = pa.timestamp("us")
        elif isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
            arrow = pa.decimal128(sql_type.precision or 18, sql_type.scale or 2)
        elif isinstance(sql_type, sa.Float):
            arrow = pa.float64()
        else:
            arrow = pa.string()
        fields.append(pa.field(name, arrow))
    return pa.schema(fields)


__all__ = ["collect_events", "collect_sources", "SOURCE_TABLES"]
