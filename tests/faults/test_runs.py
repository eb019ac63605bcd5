"""Faults between runs: overlapping writers, a failed date, several queued dates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from types import SimpleNamespace

import pytest

from jobs.platform.errors import LockHeldError, UpstreamNotReadyError
from jobs.platform.locks import warehouse_lock
from jobs.platform.orchestration import business_date_from_assets, business_dates_from_assets
from jobs.platform.published import check_no_gap

D = date(2026, 10, 10)


def _hold_lock_in_another_process(config_overrides: dict, seconds: float) -> subprocess.Popen:
    """A second run: another process that takes the warehouse lock and keeps it a while."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from jobs.platform.config import load_config
        from jobs.platform.locks import warehouse_lock
        config = load_config(environ={{}}, overrides={config_overrides!r})
        with warehouse_lock(config, "backfill 2026-10-01"):
            print("locked", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _overrides(config) -> dict:
    return {"warehouse": {"url": config.warehouse.url, "schema": config.warehouse.schema_name}}


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_a_second_writer_waits_then_fails_naming_the_holder(backend, make_config, request):
    if backend == "postgresql":
        url, schema = request.getfixturevalue("postgres_url"), request.getfixturevalue("pg_schema")
        config = make_config(warehouse={"url": url, "schema": schema, "lock_timeout_seconds": 1})
    else:
        config = make_config(warehouse={"lock_timeout_seconds": 1})
    holder = _hold_lock_in_another_process(_overrides(config), seconds=30)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeldError, match="being written by") as caught:
            with warehouse_lock(config, "load 2026-10-10"):
                pytest.fail("two writers held the warehouse lock at once")
        assert time.monotonic() - started >= 1  # it waited for the timeout first
        assert "warehouse.lock_timeout_seconds" in str(caught.value)
        if backend == "duckdb":  # the lock file says who holds it
            assert "backfill 2026-10-01" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    with warehouse_lock(config, "load 2026-10-10"):  # free again once the holder is gone
        pass


def test_a_waiting_writer_goes_on_when_the_holder_finishes(make_config):
    config = make_config(warehouse={"lock_timeout_seconds": 60})
    holder = _hold_lock_in_another_process(_overrides(config), seconds=2)
    started = time.monotonic()
    with warehouse_lock(config, "load 2026-10-10"):
        waited = time.monotonic() - started
    holder.wait()
    assert 0.5 < waited < 60


def test_the_lock_is_reentrant_within_a_process(make_config):
    config = make_config(warehouse={"lock_timeout_seconds": 0})
    with warehouse_lock(config, "outer"), warehouse_lock(config, "inner"):
        pass


def test_a_date_is_not_published_over_a_missing_earlier_date():
    check_no_gap(set(), D)  # the first night
    check_no_gap({D - timedelta(days=1)}, D)
    check_no_gap({D - timedelta(days=2), D - timedelta(days=1), D + timedelta(days=1)}, D)  # re-running D
    with pytest.raises(
        UpstreamNotReadyError,
        match=r"2026-10-09 not published yet .*marketing run --date 2026-10-09",
    ):
        check_no_gap({D - timedelta(days=2)}, D)
    with pytest.raises(UpstreamNotReadyError, match=r"2026-10-06 to 2026-10-09 not published yet"):
        check_no_gap({D - timedelta(days=5)}, D)


def test_an_asset_triggered_run_works_on_every_queued_date_in_order():
    def event(day: str):
        return SimpleNamespace(extra={"business_date": day})

    context = {
        "triggering_asset_events": {
            "fct_orders": [event("2026-10-03"), event("2026-10-01")],
            "x": [event("2026-10-02")],
        }
    }
    assert business_dates_from_assets(context, "UTC") == [
        date(2026, 10, 1),
        date(2026, 10, 2),
        date(2026, 10, 3),
    ]
    assert business_date_from_assets(context, "UTC") == date(2026, 10, 3)
    assert business_dates_from_assets({**context, "params": {"business_date": "2026-09-30"}}, "UTC") == [
        date(2026, 9, 30)
    ]
