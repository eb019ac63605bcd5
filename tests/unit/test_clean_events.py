"""Event cleaning rules, each pinned down on a tiny hand-made frame."""

import json
import time
from datetime import date, datetime, timezone

import pytest

from jobs.ingest.clean_events import classify_events, flag_bots, parse_events, split_duplicates

DAY = date(2026, 10, 10)
WINDOW_END = datetime(2026, 10, 10, 16, 0, tzinfo=timezone.utc)  # 2026-10-11 00:00 +08:00
TZ = "Asia/Shanghai"


def event(**overrides):
    base = {
        "event_id": "e1",
        "event_type": "product_view",
        "event_ts": "2026-10-10T12:00:00+08:00",
        "user_id": 7,
        "anonymous_id": "a1",
        "session_id": "s1",
        "product_id": 10,
        "query": None,
        "channel": "web",
        "device": "desktop",
        "utm_source": None,
        "price": 19.9,
    }
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def classify(spark, lines, known_products=(10, 11)):
    frame = spark.createDataFrame(
        [(line, "events/date=2026-10-10/hour=04/f.jsonl.gz", i + 1) for i, line in enumerate(lines)],
        "value string, source_file string, line_number int",
    )
    products = spark.createDataFrame([(p,) for p in known_products], "product_id long")
    return classify_events(
        parse_events(frame),
        logical_date=DAY,
        tz=TZ,
        window_end=WINDOW_END,
        late_window_days=3,
        future_tolerance_minutes=60,
        known_products=products,
    )


def reasons(spark, lines):
    return [row["reason"] for row in classify(spark, lines).orderBy("line_number").collect()]


def test_valid_event_is_normalised(spark):
    row = classify(spark, [event(event_type=" Product_View ", channel="WEB", price="12.50")]).first()
    assert row["reason"] is None
    assert row["event_type"] == "product_view"
    assert row["channel"] == "web"
    assert row["event_at"] == datetime(2026, 10, 10, 4, 0)  # UTC, naive in Spark
    assert row["event_date"] == DAY
    assert float(row["price"]) == 12.5


def test_mixed_offsets_land_on_the_same_instant_and_local_date(spark):
    rows = classify(
        spark, [event(event_ts="2026-10-10T04:00:00Z"), event(event_id="e2", event_ts="2026-10-09T22:00:00-06:00")]
    ).collect()
    assert {r["event_at"] for r in rows} == {datetime(2026, 10, 10, 4, 0)}
    assert {r["event_date"] for r in rows} == {DAY}


def test_malformed_json_is_rejected(spark):
    assert reasons(spark, ['{"event_id": "x", "event_type"', "[1, 2]", "42"]) == ["malformed_json"] * 3


@pytest.mark.parametrize("field", ["event_id", "event_type", "event_ts", "session_id", "anonymous_id", "channel"])
def test_missing_required_field_is_rejected(spark, field):
    row = classify(spark, [event(**{field: None})]).first()
    assert row["reason"] == "missing_required_field"
    assert row["detail"] == field


def test_wrong_types_are_rejected_but_numeric_strings_are_fine(spark):
    got = reasons(
        spark,
        [event(price="free"), event(event_id="e2", user_id="abc"), event(event_id="e3", price="9.90", user_id="8")],
    )
    assert got == ["wrong_type", "wrong_type", None]


@pytest.mark.parametrize(
    "ts", ["yesterday", "1970-01-01T00:00:00Z", "2099-01-01T00:00:00+08:00", "2026-10-11T03:00:00+08:00"]
)
def test_unparsable_or_out_of_range_timestamps_are_rejected(spark, ts):
    assert reasons(spark, [event(event_ts=ts)]) == ["invalid_timestamp"]


def test_the_plausible_time_range_does_not_depend_on_the_machines_time_zone(spark, monkeypatch):
    """A naive datetime literal is read in the process's local time zone: on a machine set to
    the shop's zone (+08:00) the latest plausible time would move 8 hours earlier."""
    monkeypatch.setenv("TZ", TZ)
    time.tzset()
    try:
        got = reasons(
            spark,
            [
                event(event_ts="2026-10-10T23:30:00+08:00"),
                event(event_id="e2", event_ts="2026-10-11T00:30:00+08:00"),  # within the 60-minute tolerance
                event(event_id="e3", event_ts="2026-10-11T01:30:00+08:00"),
            ],
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    assert got == [None, None, "invalid_timestamp"]


def test_unknown_enum_values_are_rejected(spark):
    assert reasons(spark, [event(event_type="pageview2"), event(event_id="e2", channel="tv")]) == ["invalid_enum"] * 2


def test_events_older_than_the_late_window_are_too_late(spark):
    got = reasons(
        spark, [event(event_ts="2026-10-06T12:00:00+08:00"), event(event_id="e2", event_ts="2026-10-08T12:00:00+08:00")]
    )
    assert got == ["too_late", None]


def test_unknown_product_is_rejected_and_missing_product_is_fine(spark):
    got = reasons(spark, [event(product_id=999999), event(event_id="e2", product_id=None, event_type="page_view")])
    assert got == ["unknown_product_id", None]


def test_unknown_extra_fields_are_kept_in_a_map(spark):
    line = json.dumps({**json.loads(event()), "app_version": "5.2.1"})
    row = classify(spark, [line]).first()
    assert row["reason"] is None
    assert row["extra_fields"] == {"app_version": "5.2.1"}


def test_duplicates_keep_the_first_occurrence_and_drop_ids_seen_before(spark):
    rows = classify(spark, [event(), event(), event(event_id="e2"), event(event_id="e3")])
    seen = spark.createDataFrame([("e3",)], "event_id string")
    unique, duplicates = split_duplicates(rows, seen)
    assert sorted(r["event_id"] for r in unique.collect()) == ["e1", "e2"]
    assert sorted((r["event_id"], r["line_number"]) for r in duplicates.collect()) == [("e1", 2), ("e3", 4)]


def test_sessions_faster_than_the_bot_rate_are_flagged_whole(spark):
    burst = [event(event_id=f"b{i}", session_id="bot", event_ts=f"2026-10-10T12:00:{i:02d}+08:00") for i in range(40)]
    slow = [event(event_id="b-later", session_id="bot", event_ts="2026-10-10T13:00:00+08:00")]
    human = [event(event_id=f"h{i}", session_id="human", event_ts=f"2026-10-10T12:0{i}:00+08:00") for i in range(5)]
    flagged = flag_bots(classify(spark, burst + slow + human), max_events_per_minute=30)
    by_session = {(r["session_id"], r["is_bot"]) for r in flagged.collect()}
    assert by_session == {("bot", True), ("human", False)}
