"""The shop's suppression list end to end on a tiny hand-made source: two nights of collect,
clean, validate and load publish ``dim_suppression`` insert-only. A suppression stays as first
published when a later extract brings its key with another reason, and stays when it is no
longer in the source; a new key is added. Timestamps are UTC, the shop is in Asia/Shanghai (the
logical date D ends at 16:00 UTC on D)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

D1, D2 = date(2026, 10, 1), date(2026, 10, 2)
SIGNED_UP = datetime(2026, 9, 20, 2, 0)
IN_D1 = datetime(2026, 10, 1, 3, 0)
IN_D2 = datetime(2026, 10, 2, 5, 0)


def _user(user_id: int) -> dict:
    return {
        "user_id": user_id,
        "signup_at": SIGNED_UP,
        "gender": "F",
        "birth_year": 1990,
        "region": "East",
        "city": "Shanghai",
        "email": f"u{user_id}@example.com",
        "phone": None,
        "consent_email": True,
        "consent_sms": True,
        "consent_push": False,
        "updated_at": SIGNED_UP,
    }


def _suppression(user_id: int, channel: str, reason: str, at: datetime) -> dict:
    return {"user_id": user_id, "channel": channel, "reason": reason, "suppressed_at": at, "updated_at": at}


def _published(config) -> dict[tuple, tuple]:
    from jobs.platform.ops import warehouse_engine

    with warehouse_engine(config).connect() as conn:
        rows = conn.execute(
            sa.text("select user_id, channel, reason, suppressed_at, first_loaded_at from dim_suppression")
        )
        return {(r[0], r[1]): (r[2], r[3].astimezone(UTC), r[4]) for r in rows}


def test_two_nights_publish_suppressions_insert_only(make_config, monkeypatch):
    from jobs.platform.ops import warehouse_engine
    from jobs.platform.stages import run_pipeline
    from jobs.simulator.source_db import SOURCE_TABLES

    monkeypatch.setenv("MKT_PII_HASH_KEY", "suppression-test-key-0123456789abcdef0123")
    config = make_config(validation={"build_data_docs": False}, collect={"lookback_days": 0, "late_scan_days": 0})
    tables = {name: table for name, (table, _) in SOURCE_TABLES.items()}
    source = sa.create_engine(config.source.url)
    with source.begin() as conn:
        for table in tables.values():
            table.create(conn)
        conn.execute(tables["users"].insert(), [_user(i) for i in (1, 2, 3)])
        conn.execute(
            tables["suppressions"].insert(),
            [_suppression(1, "email", "unsubscribed", IN_D1), _suppression(2, "sms", "bounced", IN_D1)],
        )
    run_pipeline(config, D1, ["nightly"])
    first = _published(config)
    assert {key: value[:2] for key, value in first.items()} == {
        (1, "email"): ("unsubscribed", IN_D1.replace(tzinfo=UTC)),
        (2, "sms"): ("bounced", IN_D1.replace(tzinfo=UTC)),
    }

    # D2: the shop rewrites customer 1's email suppression, drops customer 2's, adds customer 3's
    with source.begin() as conn:
        suppressions = tables["suppressions"]
        conn.execute(
            suppressions.update()
            .where((suppressions.c.user_id == 1) & (suppressions.c.channel == "email"))
            .values(reason="complained", suppressed_at=IN_D2, updated_at=IN_D2)
        )
        conn.execute(suppressions.delete().where(suppressions.c.user_id == 2))
        conn.execute(suppressions.insert(), [_suppression(3, "all", "unsubscribed", IN_D2)])
    source.dispose()
    results = run_pipeline(config, D2, ["nightly"])
    assert results["clean_sources"]["tables"]["suppressions"]["counts"] == {
        "input": 2,
        "clean": 2,
        "quarantined": 0,
        "duplicates": 0,
    }
    assert results["validate"]["datasets"]["suppressions"]["failed_errors"] == 0

    second = _published(config)
    assert second[(1, "email")] == first[(1, "email")]  # as first recorded: reason, time and first load
    assert second[(2, "sms")] == first[(2, "sms")]  # no longer in the source: kept
    assert second[(3, "all")][:2] == ("unsubscribed", IN_D2.replace(tzinfo=UTC))
    assert set(second) == {(1, "email"), (2, "sms"), (3, "all")}

    run_pipeline(config, D2, ["load"])  # publishing D2 again changes nothing
    assert _published(config) == second
    with warehouse_engine(config).connect() as conn:
        checks = conn.execute(
            sa.text(
                "select count(*), sum(case when is_success then 0 else 1 end) from ops_data_quality "
                "where dataset = 'suppressions' and logical_date = :d"
            ),
            {"d": D2},
        ).one()
    assert checks[0] > 0 and checks[1] == 0
