"""Collect: bring the day's inputs into the raw zone, unchanged and accounted for.

Events: the landing files written during logical date D's window, plus files that arrived late
in earlier days' folders (within ``collect.lookback_days``) and were not collected yet, are
copied byte for byte to ``raw/events/batch_date=D/`` with a manifest (file, size, sha256, line
count). A file belongs to exactly one batch: re-running D collects the same files again and
never a file another batch already holds.

Each landing file is streamed once (in chunks, never whole in memory) into a local spool while
its size and sha256 are computed; the spool is then verified (a ``.gz`` file is decompressed to
its end, so a bad CRC or a truncated stream is found) and its lines counted the way the clean
stage reads them: lines end at ``\n`` only (a ``\r`` is part of the line), and a last line without
``\n`` counts. Then the file is one of three things, recorded per file in the manifest:

- collected (``files``): copied to ``raw/events/batch_date=D/<landing key>``;
- quarantined whole (``quarantined_files``), reason ``corrupt_gzip`` (not gzip although named
  ``.gz``, truncated, corrupt or empty): copied byte for byte to
  ``quarantine/event_files/batch_date=D/<landing key>`` with its sha256 and the reason's detail.
  It adds no line to the event input (its lines cannot be known);
- a duplicate file (``duplicate_files``): the same bytes (sha256) as a file already collected by
  this batch or a batch within the lookback, delivered again under another name. Not copied;
  its lines are counted as duplicates (``duplicate_line_count``), so the clean stage still
  reconciles ``input lines = clean + quarantined + duplicates``.

Files reconcile as well: ``found = collected + quarantined + duplicate`` (``ops_pipeline_runs``
row ``collect`` / ``event_files``, reasons in ``ops_quarantine_daily``).

The previous raw batch of D is never wiped first: new files are written next to it (an unchanged
file is not rewritten at all), the manifest (one atomic write) then switches to the new batch,
and only after that are files the new manifest does not name deleted. A failure part-way leaves
the previous manifest and every file it names as they were.

Files that arrived too late for any batch (in landing folders older than the lookback, up to
``collect.late_scan_days`` before it, and held by no batch) are not ignored: their count and
oldest date are in the summary and run record, and ``ops_data_quality`` gets a warning row
(check ``late_files_beyond_lookback``).

Source tables: rows with ``updated_at`` in ``(watermark - overlap, end of D]`` are extracted
through SQLAlchemy into Parquet under ``raw/source/<table>/extract_date=D/``. The watermark is
the upper bound of the latest earlier extract, read from its manifest, so a re-run of D extracts
the same window. ``collect.full_reload`` (or ``full_reload=True``) extracts everything up to D.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import (
    ConfigError,
    EndpointUnavailableError,
    PublishMismatchError,
    SchemaDriftError,
    one_line,
)
from jobs.platform.interface import SOURCE_COLUMNS
from jobs.platform.lake import (
    lake_storage,
    landing_hour_prefix,
    landing_storage,
    parquet_rows,
    quarantine_event_files_prefix,
    raw_events_prefix,
    raw_keys_prefix,
    raw_source_prefix,
    read_json,
    run_record_key,
    window_for,
    write_json,
)
from jobs.platform.ops import (
    COLLECT_CHECKS,
    record_and_reconcile,
    record_quality,
    record_stage,
    warehouse_engine,
)
from jobs.platform.storage import CHUNK_BYTES, Storage

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"
EVENT_FILE_SUFFIXES = (".jsonl.gz", ".jsonl")
# Why collect sets a whole landing file aside (quarantine/event_files/...).
FILE_REASONS = ("corrupt_gzip",)
SPOOL_MEMORY_BYTES = 16 << 20  # a landing file larger than this is spooled to a local temp file
LATE_CHECK = "late_files_beyond_lookback"


def count_lines(stream: BinaryIO) -> int:
    """Lines of a stream read in chunks: ``\n``-terminated lines plus an unterminated last one
    (what Spark's text reader with ``lineSep="\n"`` returns)."""
    count, last = 0, b"\n"
    while chunk := stream.read(CHUNK_BYTES):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


def inspect_event_file(stream: BinaryIO, key: str) -> tuple[int, str | None, str | None]:
    """``(line count, None, None)`` for a readable landing file, or ``(0, reason, detail)``.

    A ``.gz`` file is decompressed to its end in chunks, so the gzip trailer (CRC and length)
    is checked; several concatenated gzip members are fine.
    """
    if not key.endswith(".gz"):
        return count_lines(stream), None, None
    head = stream.read(2)
    if not head:
        return 0, "corrupt_gzip", "empty file (0 bytes), not a gzip stream"
    if head != b"\x1f\x8b":
        return (
            0,
            "corrupt_gzip",
            f"not gzip: the file starts with {head!r}, not the gzip magic bytes",
        )
    stream.seek(0)
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as reader:
            return count_lines(reader), None, None
    except EOFError as exc:
        return 0, "corrupt_gzip", f"truncated: {one_line(exc)}"
    except (gzip.BadGzipFile, zlib.error) as exc:
        return 0, "corrupt_gzip", f"corrupt: {one_line(exc)}"


@contextlib.contextmanager
def _spooled(storage: Storage, key: str) -> Iterator[tuple[BinaryIO, int, str]]:
    """The object streamed once into a local spool: ``(spool at position 0, size, sha256)``."""
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        with storage.open_read(key) as source:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        spool.seek(0)
        yield spool, size, digest.hexdigest()


def _manifests_around(lake: Storage, day: date, before: int, after: int) -> dict[date, dict]:
    """Event manifests of the batches ``day - before`` .. ``day + after`` (not ``day`` itself)."""
    found = {}
    for offset in range(-before, after + 1):
        other = day + timedelta(days=offset)
        key = raw_events_prefix(other) + MANIFEST
        if offset != 0 and lake.exists(key):
            found[other] = read_json(lake, key)
    return found


def _held_keys(manifest: dict) -> set[str]:
    """Landing keys a batch holds: collected, quarantined whole, or counted as duplicates."""
    entries = [
        *manifest["files"],
        *manifest.get("quarantined_files", []),
        *manifest.get("duplicate_files", []),
    ]
    return {entry["key"] for entry in entries}


def _hour_of(key: str) -> datetime | None:
    """The UTC write hour of a landing key ``events/date=YYYY-MM-DD/hour=HH/...``."""
    try:
        _, day_part, hour_part, *_ = key.split("/")
        return datetime.strptime(f"{day_part[5:]} {hour_part[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except (ValueError, IndexError):
        return None


def _too_late_files(config: PipelineConfig, landing: Storage, day: date, held: set[str]) -> list[tuple[str, date]]:
    """Landing files in folders older than D's lookback (up to ``late_scan_days`` before it)
    that no batch holds: they will never be collected. ``(key, logical date of its folder)``."""
    lookback, scan = config.collect.lookback_days, config.collect.late_scan_days
    if scan == 0:
        return []
    start = window_for(day - timedelta(days=lookback + scan), config.tz).start
    end = window_for(day - timedelta(days=lookback), config.tz).start
    found = []
    folder = start.date()
    while folder <= (end - timedelta(hours=1)).date():
        for info in landing.list(f"events/date={folder.isoformat()}/"):
            hour = _hour_of(info.key)
            if hour is None or not (start <= hour < end) or info.key in held:
                continue
            if info.key.endswith(EVENT_FILE_SUFFIXES):
                found.append((info.key, hour.astimezone(config.tz).date()))
        folder += timedelta(days=1)
    return found


def _unchanged(lake_sizes: dict[str, int], previous: dict[str, dict], key: str, size: int, sha: str) -> bool:
    """The lake already holds exactly these bytes at ``key`` (named by the previous manifest)."""
    entry = previous.get(key)
    return entry is not None and entry["sha256"] == sha and lake_sizes.get(key) == size


def collect_events(config: PipelineConfig, logical_date: date) -> dict:
    """Copy D's landing files (and late files of earlier days) into the raw zone."""
    landing, lake = landing_storage(config), lake_storage(config)
    lookback = config.collect.lookback_days
    prefix = raw_events_prefix(logical_date)
    quarantine = quarantine_event_files_prefix(logical_date)

    neighbours = _manifests_around(lake, logical_date, lookback + config.collect.late_scan_days, lookback)
    claimed = set().union(*(_held_keys(m) for m in neighbours.values()))
    # sha256 -> (landing key, batch) of files collected by this batch or one within the lookback
    collected_sha = {
        entry["sha256"]: (entry["key"], other)
        for other, manifest in sorted(neighbours.items(), reverse=True)
        if logical_date - timedelta(days=lookback) <= other < logical_date
        for entry in manifest["files"]
    }

    candidates = []
    for offset in range(lookback, -1, -1):
        window = window_for(logical_date - timedelta(days=offset), config.tz)
        for hour in window.utc_hours():
            for info in landing.list(landing_hour_prefix(hour)):
                if info.key.endswith(EVENT_FILE_SUFFIXES) and info.key not in claimed:
                    candidates.append((offset, info))

    old = read_json(lake, prefix + MANIFEST) if lake.exists(prefix + MANIFEST) else {"files": []}
    previous = {e["raw_key"]: e for e in old["files"]}
    previous.update({e["quarantine_key"]: e for e in old.get("quarantined_files", [])})
    lake_sizes = {info.key: info.size for root in (prefix, quarantine) for info in lake.list(root)}

    files, quarantined, duplicates = [], [], []
    for offset, info in candidates:
        with _spooled(landing, info.key) as (spool, size, sha):
            lines, reason, detail = inspect_event_file(spool, info.key)
            entry = {
                "key": info.key,
                "size_bytes": size,
                "sha256": sha,
                "is_late_arrival": offset > 0,
            }
            if reason is not None:
                target = quarantine + info.key
                quarantined.append({**entry, "quarantine_key": target, "reason": reason, "detail": detail})
                log.warning("quarantined landing file %s (%s): %s", info.key, reason, detail)
            elif sha in collected_sha:
                original_key, original_batch = collected_sha[sha]
                duplicates.append(
                    {
                        **entry,
                        "line_count": lines,
                        "duplicate_of": original_key,
                        "duplicate_of_batch": original_batch.isoformat(),
                    }
                )
                log.warning(
                    "landing file %s duplicates %s (sha256 %s): not collected",
                    info.key,
                    original_key,
                    sha,
                )
                continue
            else:
                target = prefix + info.key
                files.append({**entry, "raw_key": target, "line_count": lines})
                collected_sha[sha] = (info.key, logical_date)
            if not _unchanged(lake_sizes, previous, target, size, sha):
                spool.seek(0)
                lake.write_file(target, spool)

    landing_keys_held = {e["key"] for e in [*files, *quarantined, *duplicates]}
    too_late = _too_late_files(config, landing, logical_date, claimed | landing_keys_held)
    oldest_late = min((d for _, d in too_late), default=None)
    manifest = {
        "logical_date": logical_date.isoformat(),
        "collected_at": datetime.now(UTC).isoformat(),
        "landing_root": landing.root,
        "file_count": len(files),
        "line_count": sum(f["line_count"] for f in files),
        "byte_count": sum(f["size_bytes"] for f in files),
        "late_file_count": sum(f["is_late_arrival"] for f in files),
        "quarantined_file_count": len(quarantined),
        "duplicate_file_count": len(duplicates),
        "duplicate_line_count": sum(f["line_count"] for f in duplicates),
        "too_late_file_count": len(too_late),
        "too_late_oldest_date": oldest_late.isoformat() if oldest_late else None,
        "files": files,
        "quarantined_files": quarantined,
        "duplicate_files": duplicates,
        "too_late_files": [key for key, _ in too_late[:100]],
    }
    manifest["input_line_count"] = manifest["line_count"] + manifest["duplicate_line_count"]
    write_json(lake, prefix + MANIFEST, manifest)
    # Only now that the new manifest names the batch: drop what it no longer names.
    keep = {prefix + MANIFEST} | {f["raw_key"] for f in files} | {f["quarantine_key"] for f in quarantined}
    for key in lake_sizes:
        if key not in keep:
            lake.delete_prefix(key)

    _record_collect(config, logical_date, manifest)
    log.info(
        "collected %d event files (%d lines) for %s; %d quarantined, %d duplicate, %d too late to collect",
        len(files),
        manifest["line_count"],
        logical_date,
        len(quarantined),
        len(duplicates),
        len(too_late),
    )
    return {k: v for k, v in manifest.items() if k not in ("files", "quarantined_files", "duplicate_files")}


def _record_collect(config: PipelineConfig, day: date, manifest: dict) -> None:
    """Run records of the collect: lines (events) and files (event_files), and the late-file check."""
    lake = lake_storage(config)
    found = manifest["file_count"] + manifest["quarantined_file_count"] + manifest["duplicate_file_count"]
    events = {
        "stage": "collect",
        "dataset": "events",
        "logical_date": day.isoformat(),
        "counts": {
            "input": manifest["input_line_count"],
            "clean": manifest["line_count"],
            "quarantined": 0,
            "duplicates": manifest["duplicate_line_count"],
        },
        "files": manifest["file_count"],
        "late_files": manifest["late_file_count"],
        "bytes": manifest["byte_count"],
        "quarantined_files": manifest["quarantined_file_count"],
        "duplicate_files": manifest["duplicate_file_count"],
        "too_late_files": {
            "count": manifest["too_late_file_count"],
            "oldest_date": manifest["too_late_oldest_date"],
        },
    }
    files = {
        "stage": "collect",
        "dataset": "event_files",
        "logical_date": day.isoformat(),
        "counts": {
            "input": found,
            "clean": manifest["file_count"],
            "quarantined": manifest["quarantined_file_count"],
            "duplicates": manifest["duplicate_file_count"],
        },
        "quarantined_by_reason": {
            reason: sum(1 for f in manifest["quarantined_files"] if f["reason"] == reason) for reason in FILE_REASONS
        },
        "quarantined_files": [
            {k: f[k] for k in ("key", "quarantine_key", "sha256", "size_bytes", "reason", "detail")}
            for f in manifest["quarantined_files"]
        ],
        "duplicate_files": [
            {k: f[k] for k in ("key", "sha256", "line_count", "duplicate_of", "duplicate_of_batch")}
            for f in manifest["duplicate_files"]
        ],
    }
    write_json(lake, run_record_key("collect", "events", day), {**events, "event_files": files})
    record_stage(config, events)
    record_and_reconcile(config, files)
    late = manifest["too_late_file_count"]
    record_quality(
        config,
        day,
        [
            {
                "logical_date": day,
                "dataset": "events",
                "contract_id": COLLECT_CHECKS,
                "contract_version": "1",
                "check_name": LATE_CHECK,
                "expectation_type": "landing_files_collected_within_lookback",
                "column_name": None,
                "severity": "warning",
                "is_success": late == 0,
                "element_count": None,
                "unexpected_count": late,
                "observed_value": json.dumps(
                    {
                        "files": late,
                        "oldest_date": manifest["too_late_oldest_date"],
                        "lookback_days": config.collect.lookback_days,
                        "examples": manifest["too_late_files"][:5],
                    }
                ),
                "validated_at": datetime.now(UTC),
            }
        ],
        [COLLECT_CHECKS],
    )
    if late:
        log.warning(
            "data-quality warning %s: %d landing file(s) arrived after the %d-day lookback and will never "
            "be collected (oldest from %s), e.g. %s",
            day,
            late,
            config.collect.lookback_days,
            manifest["too_late_oldest_date"],
            manifest["too_late_files"][0],
        )


def source_engine(config: PipelineConfig) -> sa.Engine:
    """The shop database, or with ``source.mapping_file`` the staging database the shop's mapped
    files or schema were just written into in the interface's shape."""
    if config.source.mapping_file:
        from jobs.ingest.source_map import materialise

        return sa.create_engine(materialise(config).url)
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


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def check_source_columns(table: str, columns: set[str]) -> None:
    """Schema drift is a one-line error naming table and column, not something to retry."""
    missing = [column for column in SOURCE_COLUMNS.get(table, ()) if column not in columns]
    if missing:
        raise SchemaDriftError(
            f"source table {table}: column {missing[0]!r} is missing"
            + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
            + f" — renamed or dropped in the source database? the pipeline reads {', '.join(SOURCE_COLUMNS[table])}"
        )


# A row changed in D's window brings the rows it points at, at their current version: a backfill
# runs after parents changed again (an order's status, a customer's profile), and their own
# window is later, so without this a line of D would arrive before its order and be lost as
# ``unknown_order_id``. Night by night nothing changes: parents are created with their children.
REFERENCED_BY = {
    "users": (("orders", "user_id"), ("suppressions", "user_id")),
    "orders": (("order_items", "order_id"),),
    "products": (("order_items", "product_id"),),
}


# Tables whose whole key set is extracted every night besides the changed rows. A product
# created before D but changed only after it is missing from every extract up to D when D is
# backfilled (the source keeps no history), and D's events on it would be quarantined as
# ``unknown_product_id``; with the key set they are kept, as a night-by-night run keeps them.
# A key set holds the keys at extraction time: in a backfill, products created after D too
# (the source records no creation time), so an event of D naming one of those is admitted.
KEY_SETS = {"products": "product_id"}


def changed_or_referenced(
    tables: dict[str, sa.Table], name: str, lowers: dict[str, datetime | None], upper: datetime
) -> sa.ColumnElement[bool]:
    """Rows of ``name`` with ``updated_at`` in (lower, upper], or referenced by such rows of a
    child table (recursively: users of orders of changed order lines)."""
    table = tables[name]
    condition = table.c.updated_at <= _naive_utc(upper)
    if lowers[name] is not None:
        condition = condition & (table.c.updated_at > _naive_utc(lowers[name]))
    for child, key in REFERENCED_BY.get(name, ()):
        if child in tables:
            referenced = sa.select(tables[child].c[key]).where(changed_or_referenced(tables, child, lowers, upper))
            condition = condition | table.c[key].in_(referenced)
    return condition


def collect_sources(config: PipelineConfig, logical_date: date, full_reload: bool | None = None) -> dict:
    """Incrementally extract every source table changed in D's window into raw Parquet."""
    lake = lake_storage(config)
    full_reload = config.collect.full_reload if full_reload is None else full_reload
    upper = window_for(logical_date, config.tz).end
    engine = source_engine(config)
    summary: dict[str, dict] = {}
    try:
        inspector = sa.inspect(engine)
        existing = set(inspector.get_table_names())
    except sa.exc.OperationalError as exc:  # down, refusing, or unreachable: a later try may work
        reason = " ".join(str(exc.orig).split())  # drivers' messages span lines (psycopg)
        raise EndpointUnavailableError(f"source.url: cannot connect to {engine.url!r}: {reason}") from exc
    tables: dict[str, sa.Table] = {}
    lowers: dict[str, datetime | None] = {}
    previous: dict[str, datetime | None] = {}
    for table_name in config.source.tables:
        if table_name not in existing:
            raise ConfigError(f"source.tables: table {table_name!r} not found in {engine.url!r}")
        tables[table_name] = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        check_source_columns(table_name, {column.name for column in tables[table_name].columns})
        previous[table_name] = None if full_reload else _previous_watermark(config, table_name, logical_date)
        overlap = timedelta(minutes=config.collect.source_overlap_minutes)
        lowers[table_name] = previous[table_name] - overlap if previous[table_name] else None
    for table_name, table in tables.items():
        lower = lowers[table_name]
        query = sa.select(table).where(changed_or_referenced(tables, table_name, lowers, upper))
        manifest = _extract(
            engine,
            query,
            lake,
            raw_source_prefix(table_name, logical_date),
            table=table_name,
            logical_date=logical_date.isoformat(),
            lower_bound=lower.isoformat() if lower else None,
            upper_bound=upper.isoformat(),
            full_reload=full_reload or previous[table_name] is None,
        )
        _save_watermark(config, manifest)
        summary[table_name] = {"rows": manifest["row_count"], "lower_bound": manifest["lower_bound"]}
    for table_name, key in KEY_SETS.items():
        if table_name in tables:
            query = sa.select(tables[table_name].c[key]).order_by(tables[table_name].c[key])
            manifest = _extract(
                engine, query, lake, raw_keys_prefix(table_name, logical_date), table=table_name, key=key
            )
            summary[table_name]["keys"] = manifest["row_count"]
    engine.dispose()
    return {"logical_date": logical_date.isoformat(), "tables": summary}


def _extract(engine: sa.Engine, query: sa.Select, lake: Storage, prefix: str, **facts) -> dict:
    """Extract ``query`` to Parquet parts under ``prefix`` and write their manifest (``facts``
    plus rows, parts and time). The earlier extract stays whole until this one is: new parts get
    new names, and only after the manifest is written are the parts it does not list deleted."""
    attempt = uuid.uuid4().hex[:12]
    rows, parts = _extract_to_parquet(engine, query, lake, prefix, attempt)
    held = parquet_rows(lake, [prefix + part for part in parts])
    if held != rows:
        for part in parts:  # this attempt's parts go; the earlier manifest and its parts stay
            lake.delete_prefix(prefix + part)
        raise PublishMismatchError(
            f"{lake.uri(prefix)}: extracted {rows:,} rows but its parts hold {held:,}; the earlier extract is kept"
        )
    manifest = {**facts, "row_count": rows, "parts": parts, "extracted_at": datetime.now(UTC).isoformat()}
    write_json(lake, prefix + MANIFEST, manifest)
    for info in lake.list(prefix):
        if info.key[len(prefix) :] not in (MANIFEST, *parts):
            lake.delete_prefix(info.key)
    return manifest


def _extract_to_parquet(
    engine: sa.Engine, query: sa.Select, lake: Storage, prefix: str, attempt: str, chunk_rows: int = 200_000
) -> tuple[int, list[str]]:
    """Stream the query result into Parquet parts of bounded size, named for this attempt;
    returns the row count and the part names."""
    import io

    total, parts = 0, []
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        columns = list(result.keys())
        schema = _arrow_schema(query, columns)
        while True:
            chunk = result.fetchmany(chunk_rows)
            if not chunk and parts:
                break
            table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in chunk], schema=schema)
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            parts.append(f"part-{attempt}-{len(parts):05d}.parquet")
            lake.write_bytes(prefix + parts[-1], buffer.getvalue())
            total += len(chunk)
            if not chunk:
                break
    return total, parts


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
