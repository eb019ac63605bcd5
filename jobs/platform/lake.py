"""Where things live in the lake and how a logical date maps to time windows.

Zones (keys relative to ``storage.lake_root``)::

    raw/events/batch_date=D/<landing key>            files exactly as received, + _manifest.json
    raw/source/<table>/extract_date=D/part-*.parquet  incremental extract, + _manifest.json
    restricted/raw_source/users/extract_date=D/       the same for tables holding personal data
    clean/events/batch_date=D/event_date=E/           cleaned events (Parquet)
    clean/user_days/batch_date=D/                     per customer and day of batch D's clean events
    clean/user_item_days/batch_date=D/                per customer, product, day and event type
    clean/<table>/extract_date=D/                     cleaned source deltas (Parquet)
    quarantine/<dataset>/batch_date=D/                rejected rows: payload + stage + reason
    quarantine/event_files/batch_date=D/<landing key> whole files collect rejected (corrupt gzip)
    restricted/users_pii/extract_date=D/              email/phone in clear, for consented exports
    _runs/<stage>/<dataset>/D.json                    counts of each stage run (reconciliation)
    _tmp/spark-checkpoints/                           Spark's checkpoints (long ALS runs), removed by Spark

A logical date D is a local date in the shop's time zone; its window is
``[D 00:00 local, D+1 00:00 local)`` expressed in UTC.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from jobs.platform.config import PipelineConfig
from jobs.platform.interface import PII_COLUMNS, SOURCE_COLUMNS
from jobs.platform.storage import LocalStorage, Storage, open_storage

DAILY_AGGREGATES = ("user_days", "user_item_days")  # clean/<name>/batch_date=D/, see jobs.platform.daily


@dataclass(frozen=True)
class Window:
    """The UTC half-open interval covered by one local logical date."""

    logical_date: date
    start: datetime
    end: datetime

    def utc_hours(self) -> list[datetime]:
        hours, current = [], self.start.replace(minute=0, second=0, microsecond=0)
        while current < self.end:
            if current >= self.start:
                hours.append(current)
            current += timedelta(hours=1)
        return hours


def window_for(logical_date: date, tz: ZoneInfo) -> Window:
    start = datetime.combine(logical_date, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(logical_date + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return Window(logical_date, start, end)


def landing_hour_prefix(hour: datetime) -> str:
    return f"events/date={hour:%Y-%m-%d}/hour={hour:%H}/"


def lake_storage(config: PipelineConfig) -> Storage:
    return open_storage(config.storage.lake_root, config.storage.s3_endpoint_url, config.storage.s3_region)


def landing_storage(config: PipelineConfig) -> Storage:
    return open_storage(config.storage.landing_root, config.storage.s3_endpoint_url, config.storage.s3_region)


def reports_storage(config: PipelineConfig) -> Storage:
    return open_storage(config.storage.reports_root, config.storage.s3_endpoint_url, config.storage.s3_region)


def spark_uri(storage: Storage, key: str = "") -> str:
    """The URI Spark reads and writes for a key: a local path, or s3a:// for S3 roots."""
    uri = storage.uri(key)
    if isinstance(storage, LocalStorage):
        return uri
    return "s3a://" + uri[len("s3://") :]


def raw_events_prefix(day: date) -> str:
    return f"raw/events/batch_date={day.isoformat()}/"


def raw_source_prefix(table: str, day: date) -> str:
    """Where D's extract of ``table`` lands. Extracts of tables with personal data in clear
    (``PII_COLUMNS``) land in the restricted zone, so clear email and phone exist in that
    zone only, under its access rules and retention."""
    zone = "restricted/raw_source" if table in PII_COLUMNS else "raw/source"
    return f"{zone}/{table}/extract_date={day.isoformat()}/"


def raw_keys_prefix(table: str, day: date) -> str:
    """Where D's key set of ``table`` lands: every key the source holds at extraction time."""
    return f"raw/source_keys/{table}/extract_date={day.isoformat()}/"


def clean_events_prefix(day: date | None = None) -> str:
    return "clean/events/" + (f"batch_date={day.isoformat()}/" if day else "")


def daily_prefix(name: str, day: date | None = None) -> str:
    """Per-customer daily aggregates of the clean events (see ``jobs.platform.daily``)."""
    return f"clean/{name}/" + (f"batch_date={day.isoformat()}/" if day else "")


def clean_source_prefix(table: str, day: date | None = None) -> str:
    return f"clean/{table}/" + (f"extract_date={day.isoformat()}/" if day else "")


def quarantine_prefix(dataset: str, day: date) -> str:
    return f"quarantine/{dataset}/batch_date={day.isoformat()}/"


def quarantine_event_files_prefix(day: date) -> str:
    """Whole landing files batch D set aside (byte for byte) because they cannot be read."""
    return f"quarantine/event_files/batch_date={day.isoformat()}/"


def restricted_prefix(dataset: str, day: date) -> str:
    return f"restricted/{dataset}/extract_date={day.isoformat()}/"


def run_record_key(stage: str, dataset: str, day: date) -> str:
    return f"_runs/{stage}/{dataset}/{day.isoformat()}.json"


def write_json(storage: Storage, key: str, payload: dict) -> None:
    storage.write_bytes(key, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def read_json(storage: Storage, key: str) -> dict:
    return json.loads(storage.read_bytes(key))


def has_parquet(storage: Storage, prefix: str) -> bool:
    return any(info.key.endswith(".parquet") for info in storage.list(prefix))


def parquet_rows(storage: Storage, keys: list[str]) -> int:
    """Rows of the Parquet files ``keys``, read back from their footers."""
    import io

    import pyarrow.parquet as pq

    total = 0
    for key in keys:
        with storage.open_read(key) as handle:
            source = handle if handle.seekable() else io.BytesIO(handle.read())  # an S3 body streams
            total += pq.read_metadata(source).num_rows
    return total


def clean_fingerprint(storage: Storage, day: date) -> str:
    """A sha256 over every clean file of batch D (events and each source table): path, size
    and content. ``validate`` records it and ``load`` recomputes it, so data that changed after
    validation (a re-run clean, a file touched by hand) is never published as validated."""
    digest = hashlib.sha256()
    prefixes = [
        clean_events_prefix(day),
        *(daily_prefix(name, day) for name in DAILY_AGGREGATES),
        *(clean_source_prefix(table, day) for table in SOURCE_COLUMNS),
    ]
    for prefix in prefixes:
        for info in storage.list(prefix):
            if info.key.rsplit("/", 1)[-1].startswith((".", "_")):  # Spark's markers, not data
                continue
            digest.update(f"{info.key}\0{info.size}\0".encode())
            with storage.open_read(info.key) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()
