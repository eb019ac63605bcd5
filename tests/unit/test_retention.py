"""Retention deletes whole expired partitions of the raw, quarantine and restricted zones and
keeps everything else (the clean zone, run records, partitions within the limit)."""

from datetime import date

from jobs.ingest.retention import enforce_retention, expired_partitions
from jobs.platform.lake import lake_storage

D = date(2026, 10, 31)


def test_expired_partitions_are_found_by_their_date():
    keys = [
        "raw/events/batch_date=2026-09-01/events/date=2026-09-01/hour=01/a.jsonl.gz",
        "raw/events/batch_date=2026-09-01/_manifest.json",
        "raw/events/batch_date=2026-10-30/_manifest.json",
        "restricted/raw_source/users/extract_date=2026-08-01/part-1.parquet",
        "restricted/README",
    ]
    assert expired_partitions(keys, date(2026, 10, 1)) == {
        "raw/events/batch_date=2026-09-01/": 2,
        "restricted/raw_source/users/extract_date=2026-08-01/": 1,
    }


def test_each_zone_keeps_its_own_number_of_days(make_config):
    config = make_config(retention={"raw_days": 30, "quarantine_days": 90, "restricted_days": 400})
    lake = lake_storage(config)
    files = {
        "raw/events/batch_date=2026-09-30/_manifest.json": False,  # 31 days: gone
        "raw/events/batch_date=2026-10-01/_manifest.json": True,  # 30 days: kept
        "restricted/raw_source/users/extract_date=2026-09-01/part-a.parquet": True,
        "quarantine/events/batch_date=2026-07-01/part-0.parquet": False,
        "quarantine/events/batch_date=2026-08-15/part-0.parquet": True,
        "restricted/users_pii/extract_date=2025-09-01/part-0.parquet": False,
        "clean/events/batch_date=2025-01-01/part-0.parquet": True,  # published data: never expires
        "_runs/clean/events/2025-01-01.json": True,
    }
    for key in files:
        lake.write_bytes(key, b"x")
    summary = enforce_retention(config, D)
    assert {key: lake.exists(key) for key in files} == files
    assert summary["deleted"]["raw"] == {"kept_from": "2026-10-01", "partitions": 1, "files": 1}
    assert summary["deleted"]["restricted"]["partitions"] == 1
    enforce_retention(config, D)  # idempotent
    assert {key: lake.exists(key) for key in files} == files
