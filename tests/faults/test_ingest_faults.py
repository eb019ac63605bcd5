"""Injected input faults in the nightly ingest (collect -> clean -> validate -> load).

Each fault is injected with tiny hand-written landing files (gzipped JSON Lines in the
simulator's ``events/date=D/hour=HH/`` layout) or a monkeypatched storage, and every test checks
that nothing is lost: files found = collected + quarantined + duplicate, and event lines in =
clean + quarantined + duplicates, in the run records and the ``ops_*`` tables.

One timeline of nights shares a lake and a warehouse (module fixtures, each building on the
previous one): D-1 collect only; D a dirty day (corrupt, duplicate and too-late files, CR and
non-UTF-8 bytes, a huge line); D+1 an empty day; D+2 a day where every line is rejected.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs.platform.lake import (
    clean_events_prefix,
    lake_storage,
    landing_hour_prefix,
    landing_storage,
    quarantine_event_files_prefix,
    quarantine_prefix,
    raw_events_prefix,
    read_json,
    run_record_key,
    spark_uri,
    window_for,
)
from jobs.platform.storage import LocalStorage, sha256_hex

pytestmark = pytest.mark.integration

D = date(2026, 10, 10)
MAX_LINE_BYTES = 2048


# --------------------------------------------------------------------------------------------
# Landing files, source rows and warehouse queries
# --------------------------------------------------------------------------------------------

SOURCE_ROWS_AT = datetime(2026, 10, 1, 2, 0)  # UTC, long before every date the tests run


def event(event_id: str, day: date, **fields) -> dict:
    """A valid behaviour event at noon (shop time) of ``day``; ``fields`` override or add."""
    base = {
        "event_id": event_id,
        "event_type": "product_view",
        "event_ts": f"{day.isoformat()}T12:00:00+08:00",
        "user_id": 1,
        "anonymous_id": "anon-1",
        "session_id": f"s-{event_id}",
        "product_id": 1,
        "query": None,
        "channel": "web",
        "device": "desktop",
        "utm_source": None,
        "price": 19.9,
    }
    base.update(fields)
    return base


def line(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def jsonl(lines: list[bytes]) -> bytes:
    return b"".join(part + b"\n" for part in lines)


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(jsonl(lines), mtime=0)


def hour_key(config, day: date, name: str, hour_index: int = 3) -> str:
    """Landing key of a file written in one of the UTC hours of ``day``'s window."""
    hour = window_for(day, config.tz).utc_hours()[hour_index]
    return landing_hour_prefix(hour) + name


def land(config, day: date, name: str, data: bytes, hour_index: int = 3) -> str:
    key = hour_key(config, day, name, hour_index)
    landing_storage(config).write_bytes(key, data)
    return key


def make_source(config) -> None:
    """The shop's source tables with three users and products and one order, all changed long
    before the test dates (a first night extracts them; later nights extract nothing)."""
    from jobs.simulator.source_db import SOURCE_TABLES

    engine = sa.create_engine(config.source.url)
    at = SOURCE_ROWS_AT.replace(tzinfo=UTC)
    tables = {name: table for name, (table, _) in SOURCE_TABLES.items()}
    with engine.begin() as conn:
        for table in tables.values():
            table.create(conn)
        conn.execute(
            tables["users"].insert(),
            [
                {
                    "user_id": i,
                    "signup_at": at - timedelta(days=30),
                    "gender": "F",
                    "birth_year": 1990,
                    "region": "East",
                    "city": "Shanghai",
                    "email": f"u{i}@example.com",
                    "phone": "+86 138 0000 000{i}",
                    "consent_email": True,
                    "consent_sms": False,
                    "consent_push": False,
                    "updated_at": at,
                }
                for i in (1, 2, 3)
            ],
        )
        conn.execute(
            tables["products"].insert(),
            [
                {
                    "product_id": i,
                    "name": f"Tea {i}",
                    "category_l1": "Food",
                    "category_l2": "Tea",
                    "brand": "Koi",
                    "price": 19.9,
                    "is_active": True,
                    "updated_at": at,
                }
                for i in (1, 2, 3)
            ],
        )
        conn.execute(
            tables["orders"].insert(),
            [
                {
                    "order_id": 100,
                    "user_id": 1,
                    "status": "paid",
                    "created_at": at,
                    "paid_at": at,
                    "total_amount": 39.8,
                    "discount_amount": 0,
                    "coupon_code": None,
                    "channel": "web",
                    "updated_at": at,
                }
            ],
        )
        conn.execute(
            tables["order_items"].insert(),
            [
                {
                    "order_id": 100,
                    "line_no": 1,
                    "product_id": 1,
                    "quantity": 2,
                    "unit_price": 19.9,
                    "updated_at": at,
                }
            ],
        )
    engine.dispose()


def query(config, sql: str, **params) -> list[tuple]:
    from jobs.platform.ops import warehouse_engine

    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql.replace("{schema}", schema)), params)]


def manifest(config, day: date) -> dict:
    return read_json(lake_storage(config), raw_events_prefix(day) + "_manifest.json")


def run_row(config, day: date, stage: str, dataset: str) -> tuple:
    rows = query(
        config,
        "select status, rows_in, rows_out, rows_quarantined, rows_duplicate, details_json "
        "from {schema}.ops_pipeline_runs where logical_date = :d and stage = :s and dataset = :ds",
        d=day,
        s=stage,
        ds=dataset,
    )
    assert len(rows) == 1, (day, stage, dataset, rows)
    return rows[0]


def assert_reconciles(config, day: date, stage: str, dataset: str) -> tuple[int, int, int, int]:
    status, rows_in, out, quarantined, duplicates, _ = run_row(config, day, stage, dataset)
    assert status == "success"
    assert rows_in == out + quarantined + duplicates, (
        stage,
        dataset,
        rows_in,
        out,
        quarantined,
        duplicates,
    )
    return rows_in, out, quarantined, duplicates


def quarantined_reasons(config, day: date, dataset: str) -> dict[str, int]:
    return dict(
        query(
            config,
            "select reason, row_count from {schema}.ops_quarantine_daily where logical_date = :d and dataset = :ds",
            d=day,
            ds=dataset,
        )
    )


# --------------------------------------------------------------------------------------------
# Verification of single landing files (no Spark)
# --------------------------------------------------------------------------------------------

GOOD = jsonl([b'{"a": 1}', b'{"a": 2}'])


def _bad_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]


def _bad_deflate(data: bytes) -> bytes:
    return data[:10] + b"\xff" * 6 + data[16:]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(gzip.compress(GOOD), (2, None), id="valid gzip"),
        pytest.param(gzip.compress(GOOD) + gzip.compress(b'{"a": 3}'), (3, None), id="two gzip members"),
        pytest.param(gzip.compress(b""), (0, None), id="valid gzip of nothing"),
        pytest.param(gzip.compress(b'{"a": 1}\n{"a": 2}'), (2, None), id="last line without newline"),
        pytest.param(
            gzip.compress(b'{"a":\r1}\r\n{"a": 2}\n\r\n'),
            (3, None),
            id="CR and CRLF stay inside lines",
        ),
        pytest.param(b"", (0, "corrupt_gzip"), id="empty file"),
        pytest.param(GOOD, (0, "corrupt_gzip"), id="not gzip"),
        pytest.param(gzip.compress(GOOD * 50)[:-20], (0, "corrupt_gzip"), id="truncated"),
        pytest.param(_bad_crc(gzip.compress(GOOD)), (0, "corrupt_gzip"), id="bad CRC"),
        pytest.param(_bad_deflate(gzip.compress(GOOD * 50)), (0, "corrupt_gzip"), id="corrupt deflate data"),
    ],
)
def test_collect_verifies_and_counts_each_file_as_a_stream(tmp_path: Path, data, expected):
    from jobs.ingest.collect import inspect_event_file

    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(data)
    with path.open("rb") as stream:
        lines, reason, detail = inspect_event_file(stream, "events/date=2026-10-10/hour=03/f.jsonl.gz")
    assert (lines, reason) == expected
    assert (detail is None) == (reason is None)
    if reason:
        assert "\n" not in detail


def test_plain_jsonl_lines_are_counted_like_spark_reads_them(tmp_path: Path):
    from jobs.ingest.collect import inspect_event_file

    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":\r1}\r\n\n{"a": 2}')
    with path.open("rb") as stream:
        assert inspect_event_file(stream, "events/date=2026-10-10/hour=03/f.jsonl") == (
            3,
            None,
            None,
        )


# --------------------------------------------------------------------------------------------
# Collect never destroys the previous raw batch; files are streamed
# --------------------------------------------------------------------------------------------


@pytest.fixture
def collect_config(make_config):
    return make_config(collect={"lookback_days": 1, "late_scan_days": 2})


def _raw_snapshot(config, day: date) -> dict[str, bytes]:
    lake = lake_storage(config)
    return {info.key: lake.read_bytes(info.key) for info in lake.list(raw_events_prefix(day))}


def test_a_failure_mid_copy_leaves_the_previous_raw_batch_and_manifest_as_they_were(collect_config, monkeypatch):
    from jobs.ingest.collect import collect_events

    config = collect_config
    for name in ("a", "b"):
        land(
            config,
            D,
            f"{name}.jsonl.gz",
            gz([line(event(f"{name}-1", D)), line(event(f"{name}-2", D))]),
        )
    collect_events(config, D)
    before = _raw_snapshot(config, D)
    first = manifest(config, D)
    assert first["file_count"] == 2

    # Two new files arrive in D's window; writing the second one to the lake fails.
    for name in ("c", "e"):
        land(config, D, f"{name}.jsonl.gz", gz([line(event(f"{name}-1", D))]), hour_index=5)
    original_write, calls = LocalStorage.write_file, []

    def failing_write(self, key, source):
        calls.append(key)
        if len(calls) == 2:
            raise OSError("injected: connection reset while writing " + key)
        return original_write(self, key, source)

    monkeypatch.setattr(LocalStorage, "write_file", failing_write)
    with pytest.raises(OSError, match="injected"):
        collect_events(config, D)
    assert len(calls) == 2, "unchanged files are not rewritten; only the two new ones were written"

    after = _raw_snapshot(config, D)
    assert manifest(config, D) == first
    for entry in first["files"]:
        assert after[entry["raw_key"]] == before[entry["raw_key"]]
        assert sha256_hex(after[entry["raw_key"]]) == entry["sha256"]
    assert after[raw_events_prefix(D) + "_manifest.json"] == before[raw_events_prefix(D) + "_manifest.json"]

    # The next try completes the batch and leaves nothing but what its manifest names.
    monkeypatch.setattr(LocalStorage, "write_file", original_write)
    summary = collect_events(config, D)
    assert summary["file_count"] == 4 and summary["line_count"] == 6
    final = manifest(config, D)
    raw_keys = {info.key for info in lake_storage(config).list(raw_events_prefix(D))}
    assert raw_keys == {f["raw_key"] for f in final["files"]} | {raw_events_prefix(D) + "_manifest.json"}

    # Re-running with nothing new writes no event file at all (so it cannot damage the batch).
    def no_write(self, key, source):
        raise AssertionError(f"rewrote {key}")

    monkeypatch.setattr(LocalStorage, "write_file", no_write)
    assert collect_events(config, D)["file_count"] == 4


def test_landing_files_are_streamed_never_read_whole(collect_config, monkeypatch):
    from jobs.ingest.collect import collect_events

    config = collect_config
    land(config, D, "a.jsonl.gz", gz([line(event("a-1", D))]))
    land(config, D, "b.jsonl", jsonl([line(event("b-1", D))]))
    original_read = LocalStorage.read_bytes

    def read_bytes(self, key):
        assert not key.endswith((".jsonl.gz", ".jsonl")), f"{key} read whole into memory"
        return original_read(self, key)

    monkeypatch.setattr(LocalStorage, "read_bytes", read_bytes)
    summary = collect_events(config, D)
    assert (summary["file_count"], summary["line_count"]) == (2, 2)


# --------------------------------------------------------------------------------------------
# The timeline: D-1 (collect only), D dirty, D+1 empty, D+2 every line rejected
# --------------------------------------------------------------------------------------------


@dataclass
class Night:
    config: object
    day: date
    results: dict = field(default_factory=dict)
    landed: dict[str, bytes] = field(default_factory=dict)  # landing key -> bytes


@pytest.fixture(scope="module")
def shop(tmp_path_factory, spark):
    from tests.conftest import shop_config

    root = tmp_path_factory.mktemp("fault_shop")
    config = shop_config(
        root,
        collect={"lookback_days": 1, "late_scan_days": 5},
        clean={"late_window_days": 3, "max_line_bytes": MAX_LINE_BYTES},
        spark={"master": "local[2]", "shuffle_partitions": 2},
    )
    make_source(config)
    return config


GOOD_LINES = [
    line(event("e1", D)),
    line(event("e2", D)) + b"\r",  # a CRLF line ending: the \r is JSON whitespace
    b'{"event_id": "e3",\r' + line(event("e3", D))[1:],  # a bare CR between fields
    line(event("e4", D, event_type="search", product_id=None, query="caf\ufffd")),  # real U+FFFD
    line(event("e5", D, event_type="search", product_id=None, query="PLACEHOLDER")).replace(
        b"PLACEHOLDER",
        b"caf\xe9",  # Latin-1, not UTF-8
    ),
    line(event("e6", D, blob="x" * (MAX_LINE_BYTES + 100))),  # too long
    b'{"event_id": "e7", "event_type"',  # malformed JSON
    line(event("e1", D)),  # the same event again: a duplicate
    line(event("e9", D)).replace(b'"desktop"', b'"desk\rtop"'),  # raw CR inside a string: not JSON
]


@pytest.fixture(scope="module")
def dirty_day(shop) -> Night:
    """D-1 is collected (one file of D-1, one late file of D-2); then night D runs on:
    a good file, a plain .jsonl file, four unreadable .gz files, the good file again under
    another name, D-1's file again under another name, and files too late to ever collect."""
    from jobs.ingest.collect import collect_events
    from jobs.platform.stages import run_pipeline

    config = shop
    night = Night(config, D)
    earlier = gz([line(event("p1", D - timedelta(days=1))), line(event("p2", D - timedelta(days=1)))])
    land(config, D - timedelta(days=1), "earlier.jsonl.gz", earlier)
    land(
        config,
        D - timedelta(days=2),
        "late-for-d-1.jsonl.gz",
        gz([line(event("p3", D - timedelta(days=2)))]),
    )
    collect_events(config, D - timedelta(days=1))

    good = gz(GOOD_LINES)
    truncated = gzip.compress(jsonl([line(event(f"t{i}", D)) for i in range(50)]))[:-30]
    files = {
        "good.jsonl.gz": good,
        "plain.jsonl": jsonl([line(event("e10", D, user_id=2))]),
        "not-gzip.jsonl.gz": jsonl([line(event("n1", D))]),
        "truncated.jsonl.gz": truncated,
        "bad-crc.jsonl.gz": _bad_crc(gz([line(event("c1", D))])),
        "empty.jsonl.gz": b"",
        "good-resent.jsonl.gz": good,
        "earlier-resent.jsonl.gz": earlier,
    }
    for index, (name, data) in enumerate(files.items()):
        night.landed[land(config, D, name, data, hour_index=index)] = data
    # Too late: in folders older than D's one-day lookback, held by no batch.
    for days in (3, 5, 9):  # 9 days back is beyond collect.late_scan_days (5): not scanned
        old_day = D - timedelta(days=days)
        land(config, old_day, f"too-late-{days}.jsonl.gz", gz([line(event(f"old{days}", old_day))]))
    night.results = run_pipeline(config, D, ["nightly"])
    return night


CORRUPT = ("not-gzip.jsonl.gz", "truncated.jsonl.gz", "bad-crc.jsonl.gz", "empty.jsonl.gz")


def test_dirty_day_publishes_and_both_levels_reconcile(dirty_day: Night):
    config = dirty_day.config
    assert set(dirty_day.results) == {
        "collect_events",
        "collect_sources",
        "clean_sources",
        "clean_events",
        "validate",
        "load",
        "retention",
    }
    assert run_row(config, D, "load", "warehouse")[0] == "success"
    # files: 2 collected + 4 quarantined + 2 duplicates = 8 found
    assert assert_reconciles(config, D, "collect", "event_files") == (8, 2, 4, 2)
    # lines: good (9) + plain (1) + duplicate files (9 + 2) = 21 in
    assert assert_reconciles(config, D, "clean", "events") == (21, 5, 4, 12)
    status, rows_in, out, _, duplicates, _ = run_row(config, D, "collect", "events")
    assert (status, rows_in, out, duplicates) == ("success", 21, 10, 11)
    record = read_json(lake_storage(config), run_record_key("clean", "events", D))
    assert (
        record["counts"]["input"]
        == record["counts"]["clean"] + record["counts"]["quarantined"] + record["counts"]["duplicates"]
    )
    assert record["duplicate_file_lines"] == 11
    ((published,),) = query(config, "select sum(event_count) from {schema}.fct_events_daily where event_date = :d", d=D)
    assert published == 5  # e1, e2, e3, e4, e10: identified, not bots


def test_corrupt_gzip_files_are_quarantined_whole_and_counted(dirty_day: Night):
    config = dirty_day.config
    lake = lake_storage(config)
    found = manifest(config, D)
    entries = {Path(f["key"]).name: f for f in found["quarantined_files"]}
    assert set(entries) == set(CORRUPT)
    assert found["quarantined_file_count"] == 4
    assert "truncated" in entries["truncated.jsonl.gz"]["detail"]
    assert "not gzip" in entries["not-gzip.jsonl.gz"]["detail"]
    assert "CRC" in entries["bad-crc.jsonl.gz"]["detail"]
    assert "empty" in entries["empty.jsonl.gz"]["detail"]
    for name, entry in entries.items():
        original = dirty_day.landed[entry["key"]]
        assert entry["reason"] == "corrupt_gzip"
        assert entry["sha256"] == sha256_hex(original)
        assert entry["quarantine_key"] == quarantine_event_files_prefix(D) + entry["key"]
        assert lake.read_bytes(entry["quarantine_key"]) == original, name
        assert not lake.exists(raw_events_prefix(D) + entry["key"])
    assert {Path(f["key"]).name for f in found["files"]} == {"good.jsonl.gz", "plain.jsonl"}
    assert quarantined_reasons(config, D, "event_files") == {"corrupt_gzip": 4}
    details = json.loads(run_row(config, D, "collect", "events")[5])
    assert details["quarantined_files"] == 4
    files_details = json.loads(run_row(config, D, "collect", "event_files")[5])
    assert {f["sha256"] for f in files_details["quarantined_files"]} == {e["sha256"] for e in entries.values()}
    assert read_json(lake, run_record_key("collect", "events", D))["quarantined_files"] == 4


def test_cr_and_crlf_stay_inside_lines_as_collect_counts_them(dirty_day: Night, spark):
    config = dirty_day.config
    good = next(f for f in manifest(config, D)["files"] if f["key"].endswith("good.jsonl.gz"))
    assert good["line_count"] == len(GOOD_LINES) == 9
    clean = spark.read.parquet(spark_uri(lake_storage(config), clean_events_prefix(D)))
    assert sorted(r["event_id"] for r in clean.collect()) == ["e1", "e10", "e2", "e3", "e4"]
    quarantine = spark.read.parquet(spark_uri(lake_storage(config), quarantine_prefix("events", D)))
    by_line = {r["line_number"]: r for r in quarantine.collect()}
    assert by_line[9]["reason"] == "malformed_json"  # an unescaped CR inside a string is not JSON
    assert by_line[9]["payload"].encode() == GOOD_LINES[8]


def test_invalid_utf8_is_quarantined_and_a_real_replacement_character_is_not(dirty_day: Night, spark):
    import base64

    config = dirty_day.config
    clean = spark.read.parquet(spark_uri(lake_storage(config), clean_events_prefix(D)))
    ((query_text,),) = [(r["search_query"],) for r in clean.where("event_id = 'e4'").collect()]
    assert query_text == "caf\ufffd"
    quarantine = spark.read.parquet(spark_uri(lake_storage(config), quarantine_prefix("events", D)))
    ((row,),) = [(r,) for r in quarantine.where("reason = 'invalid_encoding'").collect()]
    assert row["line_number"] == 5
    assert row["payload"] == GOOD_LINES[4].decode("utf-8", errors="replace")
    original = base64.b64decode(row["detail"].rsplit(" ", 1)[1])
    assert original == GOOD_LINES[4]
    assert quarantined_reasons(config, D, "events")["invalid_encoding"] == 1


def test_a_line_over_max_line_bytes_is_quarantined_with_a_truncated_payload(dirty_day: Night, spark):
    from jobs.ingest.clean_events import TRUNCATED_PAYLOAD_CHARS

    config = dirty_day.config
    quarantine = spark.read.parquet(spark_uri(lake_storage(config), quarantine_prefix("events", D)))
    ((row,),) = [(r,) for r in quarantine.where("reason = 'line_too_long'").collect()]
    assert row["line_number"] == 6
    assert GOOD_LINES[5].decode().startswith(row["payload"])
    assert len(row["payload"]) == min(TRUNCATED_PAYLOAD_CHARS, len(GOOD_LINES[5]))
    assert f"line of {len(GOOD_LINES[5])} bytes" in row["detail"] and "truncated" in row["detail"]
    assert quarantined_reasons(config, D, "events") == {
        "line_too_long": 1,
        "invalid_encoding": 1,
        "malformed_json": 2,
    }


def test_a_file_delivered_again_under_another_name_is_a_duplicate_file(dirty_day: Night):
    config = dirty_day.config
    found = manifest(config, D)
    duplicates = {Path(f["key"]).name: f for f in found["duplicate_files"]}
    assert set(duplicates) == {"good-resent.jsonl.gz", "earlier-resent.jsonl.gz"}
    same_batch, earlier_batch = (
        duplicates["good-resent.jsonl.gz"],
        duplicates["earlier-resent.jsonl.gz"],
    )
    assert same_batch["duplicate_of"].endswith("good.jsonl.gz") and same_batch["duplicate_of_batch"] == D.isoformat()
    assert earlier_batch["duplicate_of"].endswith("earlier.jsonl.gz")
    assert earlier_batch["duplicate_of_batch"] == (D - timedelta(days=1)).isoformat()
    assert (same_batch["line_count"], earlier_batch["line_count"]) == (9, 2)
    assert found["duplicate_line_count"] == 11 and found["duplicate_file_count"] == 2
    raw = {info.key for info in lake_storage(config).list(raw_events_prefix(D))}
    assert not any(key.endswith("resent.jsonl.gz") for key in raw), "duplicate files are not copied"
    details = json.loads(run_row(config, D, "collect", "event_files")[5])
    assert {f["key"] for f in details["duplicate_files"]} == {f["key"] for f in duplicates.values()}
    assert read_json(lake_storage(config), run_record_key("clean", "events", D))["duplicate_files"] == 2


def test_files_too_late_for_any_batch_are_reported_with_a_quality_warning(dirty_day: Night):
    config = dirty_day.config
    summary = dirty_day.results["collect_events"]
    assert summary["too_late_file_count"] == 2  # 3 and 5 days back; 9 is beyond the scan
    assert summary["too_late_oldest_date"] == (D - timedelta(days=5)).isoformat()
    assert not any("late-for-d-1" in key for key in summary["too_late_files"]), "held by D-1's batch"
    details = json.loads(run_row(config, D, "collect", "events")[5])
    assert details["too_late_files"] == {
        "count": 2,
        "oldest_date": (D - timedelta(days=5)).isoformat(),
    }
    ((severity, success, unexpected, observed),) = query(
        config,
        "select severity, is_success, unexpected_count, observed_value from {schema}.ops_data_quality "
        "where logical_date = :d and check_name = 'late_files_beyond_lookback'",
        d=D,
    )
    assert (severity, success, unexpected) == ("warning", False, 2)
    assert json.loads(observed)["oldest_date"] == (D - timedelta(days=5)).isoformat()
    # validate ran after collect and kept collect's row next to its own
    contracts = {
        row[0]
        for row in query(
            config,
            "select distinct contract_id from {schema}.ops_data_quality where logical_date = :d",
            d=D,
        )
    }
    assert "marketing.clean_events" in contracts and "pipeline.collect_events" in contracts


@pytest.fixture(scope="module")
def empty_day(dirty_day: Night) -> Night:
    """D+1: no landing file in its window, no source row changed since D."""
    from jobs.platform.stages import run_pipeline

    night = Night(dirty_day.config, D + timedelta(days=1))
    night.results = run_pipeline(night.config, night.day, ["nightly"])
    return night


def test_an_empty_day_runs_every_stage_and_publishes_nothing_new(empty_day: Night):
    config, day = empty_day.config, empty_day.day
    results = empty_day.results
    assert results["collect_events"]["file_count"] == 0
    assert all(t["rows"] == 0 for t in results["collect_sources"]["tables"].values())
    assert results["clean_events"]["counts"] == {
        "input": 0,
        "parsed_lines": 0,
        "clean": 0,
        "duplicates": 0,
        "quarantined": 0,
    }
    assert results["validate"]["passed"] is True
    assert assert_reconciles(config, day, "clean", "events") == (0, 0, 0, 0)
    assert assert_reconciles(config, day, "collect", "event_files") == (0, 0, 0, 0)
    for table in ("users", "products", "orders", "order_items"):
        assert assert_reconciles(config, day, "clean", table) == (0, 0, 0, 0)
    assert run_row(config, day, "load", "warehouse")[:3] == ("success", 0, 0)
    # volume checks may warn on an empty day; they are recorded, never a crash
    warned = query(
        config,
        "select dataset, severity from {schema}.ops_data_quality where logical_date = :d and not is_success "
        "and expectation_type = 'expect_table_row_count_to_be_between'",
        d=day,
    )
    assert ("events", "warning") in warned
    # what D published is still there
    ((orders,),) = query(config, "select count(*) from {schema}.fct_orders")
    assert orders == 1


@pytest.fixture(scope="module")
def all_rejected_day(empty_day: Night) -> Night:
    """D+2: one file whose every line is rejected."""
    from jobs.platform.stages import run_pipeline

    config, day = empty_day.config, D + timedelta(days=2)
    night = Night(config, day)
    bad = [
        b"not json at all",
        line(event("r2", day, channel="tv")),
        line(event("r3", day, product_id=999)),
        line(event("r4", day)).replace(b"desktop", b"desk\xfftop"),
    ]
    night.landed[land(config, day, "bad.jsonl.gz", gz(bad))] = gz(bad)
    night.results = run_pipeline(config, day, ["nightly"])
    return night


def test_a_day_where_every_line_is_rejected_publishes_cleanly(all_rejected_day: Night, spark):
    config, day = all_rejected_day.config, all_rejected_day.day
    counts = all_rejected_day.results["clean_events"]["counts"]
    assert (counts["input"], counts["clean"], counts["quarantined"], counts["duplicates"]) == (
        4,
        0,
        4,
        0,
    )
    assert assert_reconciles(config, day, "clean", "events") == (4, 0, 4, 0)
    assert quarantined_reasons(config, day, "events") == {
        "malformed_json": 1,
        "invalid_enum": 1,
        "unknown_product_id": 1,
        "invalid_encoding": 1,
    }
    assert all_rejected_day.results["validate"]["passed"] is True
    assert run_row(config, day, "load", "warehouse")[0] == "success"
    clean = spark.read.parquet(spark_uri(lake_storage(config), clean_events_prefix(day)))
    assert clean.count() == 0
    # the whole clean zone (every batch) still reads, with the empty batch in it
    everything = spark.read.parquet(spark_uri(lake_storage(config), clean_events_prefix()))
    assert everything.where(f"batch_date = '{day.isoformat()}'").count() == 0
    assert everything.where(f"batch_date = '{D.isoformat()}'").count() == 5


def test_rerunning_collect_for_a_date_keeps_its_quarantined_and_duplicate_files(
    all_rejected_day: Night,
):
    """Idempotent per date: re-collecting D gives the same manifest and lake files (the files
    it held stay held, none is taken by the later batches)."""
    from jobs.ingest.collect import collect_events

    config = all_rejected_day.config
    lake = lake_storage(config)
    before = manifest(config, D)
    stored = {
        info.key: lake.read_bytes(info.key)
        for prefix in (raw_events_prefix(D), quarantine_event_files_prefix(D))
        for info in lake.list(prefix)
        if not info.key.endswith("_manifest.json")
    }
    collect_events(config, D)
    after = manifest(config, D)
    for part in ("files", "quarantined_files", "duplicate_files"):
        assert after[part] == before[part], part
    assert {
        info.key: lake.read_bytes(info.key)
        for prefix in (raw_events_prefix(D), quarantine_event_files_prefix(D))
        for info in lake.list(prefix)
        if not info.key.endswith("_manifest.json")
    } == stored
    parts = ("files", "quarantined_files", "duplicate_files")
    held_by_d = {f["key"] for part in parts for f in before[part]}
    assert len(held_by_d) == 8
    for later in (D + timedelta(days=1), D + timedelta(days=2)):
        assert held_by_d.isdisjoint(f["key"] for part in parts for f in manifest(config, later)[part])


def test_a_line_count_that_differs_for_one_file_fails_the_clean_stage_naming_it(
    all_rejected_day: Night,
):
    """Per-file reconciliation: Spark's lines of each file must equal collect's count (as when
    Spark split lines at a CR that collect did not count). Runs last: it leaves D+2's clean
    run recorded as failed."""
    from jobs.ingest.clean_events import clean_events
    from jobs.platform.errors import ReconciliationError
    from jobs.platform.lake import write_json

    config, day = all_rejected_day.config, all_rejected_day.day
    lake, key = lake_storage(config), raw_events_prefix(day) + "_manifest.json"
    original = read_json(lake, key)
    tampered = json.loads(json.dumps(original))
    tampered["files"][0]["line_count"] += 1
    tampered["line_count"] += 1
    write_json(lake, key, tampered)
    try:
        with pytest.raises(ReconciliationError, match=r"5 lines in events/.*/bad\.jsonl\.gz but Spark read 4"):
            clean_events(config, day)
        assert run_row(config, day, "clean", "events")[0] == "failed"
    finally:
        write_json(lake, key, original)
