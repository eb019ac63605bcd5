"""Traffic KPIs from events on hand-computed sessions: a session's source, visitor and funnel
steps (jobs.activation.kpis.sessions_of), and the per-source counts (traffic_by_source)."""

from datetime import datetime

import pytest

from jobs.activation.kpis import NO_SOURCE, SESSION_EVENT_SCHEMA, sessions_of, traffic_by_source

T = datetime(2026, 3, 31, 9, 0)


def at(minute: int) -> datetime:
    return T.replace(minute=minute)


# (session_id, user_id, anonymous_id, event_type, event_at, utm_source)
EVENTS = [
    # s1: lands without a source, then google; a customer who logs in mid-session; buys nothing
    ("s1", None, "a1", "page_view", at(0), None),
    ("s1", 7, "a1", "product_view", at(1), "google"),
    ("s1", 7, "a1", "add_to_cart", at(2), "email"),
    # s2: the same customer later from email: cart and checkout
    ("s2", 7, "a2", "product_view", at(10), "email"),
    ("s2", 7, "a2", "add_to_cart", at(11), "email"),
    ("s2", 7, "a2", "checkout_start", at(12), "email"),
    # s3 and s4: one anonymous browser, twice, no source
    ("s3", None, "a3", "page_view", at(20), None),
    ("s4", None, "a3", "product_view", at(30), None),
    ("s4", None, "a3", "search", at(31), None),
]


@pytest.fixture
def events(spark):
    return spark.createDataFrame(EVENTS, SESSION_EVENT_SCHEMA)


def test_a_session_takes_its_first_source_its_customer_and_the_funnel_steps_it_reached(events):
    sessions = {row["session_id"]: row.asDict() for row in sessions_of(events).collect()}

    assert sessions["s1"] == {
        "session_id": "s1", "utm_source": "google", "visitor_id": "user:7", "event_count": 3,
        "has_product_view": True, "has_cart": True, "has_checkout": False,
    }  # fmt: skip
    assert sessions["s2"]["utm_source"] == "email" and sessions["s2"]["has_checkout"]
    assert sessions["s3"]["utm_source"] == NO_SOURCE and sessions["s3"]["visitor_id"] == "anonymous:a3"
    assert sessions["s4"]["visitor_id"] == "anonymous:a3" and not sessions["s4"]["has_cart"]


def test_traffic_by_source_counts_sessions_visitors_and_abandoned_carts(events):
    rows = {row["utm_source"]: row.asDict() for row in traffic_by_source(sessions_of(events)).collect()}

    assert rows == {
        "google": {
            "utm_source": "google", "session_count": 1, "visitor_count": 1, "event_count": 3,
            "product_view_session_count": 1, "cart_session_count": 1, "checkout_session_count": 0,
            "abandoned_cart_session_count": 1,
        },
        "email": {
            "utm_source": "email", "session_count": 1, "visitor_count": 1, "event_count": 3,
            "product_view_session_count": 1, "cart_session_count": 1, "checkout_session_count": 1,
            "abandoned_cart_session_count": 0,
        },
        NO_SOURCE: {
            "utm_source": NO_SOURCE, "session_count": 2, "visitor_count": 1, "event_count": 3,
            "product_view_session_count": 1, "cart_session_count": 0, "checkout_session_count": 0,
            "abandoned_cart_session_count": 0,
        },
    }  # fmt: skip


def test_no_events_make_no_sessions_and_no_traffic(spark):
    empty = spark.createDataFrame([], SESSION_EVENT_SCHEMA)
    assert traffic_by_source(sessions_of(empty)).count() == 0
