"""``marketing score-customers`` reproduces the nightly customer marts on the same orders,
and rejects bad files with one line naming the problem."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from jobs.customers.score_file import score_file
from jobs.platform.config import PROJECT_ROOT
from tests.integration.conftest import SMALL_SHOP

pytestmark = pytest.mark.integration
LAST = SMALL_SHOP.start_date + timedelta(days=SMALL_SHOP.days - 1)


@pytest.fixture(scope="module")
def nightly(small_shop):
    """The shared small shop's orders as an export, and its customer marts."""
    config, root = small_shop.config, small_shop.root
    engine = sa.create_engine(config.warehouse.url)
    with engine.connect() as conn:
        orders = pd.read_sql(
            sa.text("select order_id, user_id, created_at, total_amount, status from fct_orders"), conn
        )
        marts = pd.read_sql(
            sa.text(
                "select r.user_id, r.recency_days, r.frequency, r.monetary, r.r_score, r.f_score, r.m_score, "
                "r.rfm_group, l.lifecycle_stage, s.expected_next_order_date, s.predicted_value_12m, s.churn_risk_band "
                "from mart_user_rfm r join mart_user_lifecycle l using (snapshot_date, user_id) "
                "join mart_customer_scores s using (snapshot_date, user_id) where r.snapshot_date = :d"
            ),
            conn,
            params={"d": LAST},
        )
    engine.dispose()
    export = root / "orders.csv"
    local = pd.to_datetime(orders["created_at"], utc=True).dt.tz_convert(config.shop.timezone).dt.tz_localize(None)
    pd.DataFrame(
        {
            "user_id": orders["user_id"],
            "order_id": orders["order_id"],
            "order_ts": local.dt.strftime("%Y-%m-%d %H:%M:%S"),
            "amount": orders["total_amount"].astype(float),
            "status": orders["status"],
        }
    ).to_csv(export, index=False)
    return config, export, marts.set_index("user_id").sort_index()


def test_scoring_an_export_reproduces_the_nightly_marts(nightly, tmp_path):
    config, export, marts = nightly
    out = tmp_path / "scores.parquet"
    summary = score_file(config, str(export), LAST, str(out))
    scored = pd.read_parquet(out).set_index("user_id")
    assert summary["customers"] == len(scored)
    buyers = scored[scored["rfm_group"].notna()]
    assert set(buyers.index) == set(marts.index) and len(marts) > 20
    columns = [
        "recency_days",
        "frequency",
        "r_score",
        "f_score",
        "m_score",
        "rfm_group",
        "lifecycle_stage",
        "churn_risk_band",
    ]
    pd.testing.assert_frame_equal(buyers.loc[marts.index, columns], marts[columns], check_dtype=False)
    assert (buyers.loc[marts.index, "monetary"] - marts["monetary"]).abs().max() < 0.01
    assert (
        pd.to_datetime(buyers.loc[marts.index, "expected_next_order_date"])
        == pd.to_datetime(marts["expected_next_order_date"])
    ).all()
    assert (buyers.loc[marts.index, "predicted_value_12m"] - marts["predicted_value_12m"]).abs().max() < 0.01


def test_orders_after_the_as_of_date_are_ignored(nightly, tmp_path):
    config, export, _ = nightly
    early = LAST - timedelta(days=10)
    out = tmp_path / "early.csv"
    score_file(config, str(export), early, str(out))
    result = pd.read_csv(out)
    assert (result["recency_days"].dropna() >= 0).all()
    orders = pd.read_csv(export)
    assert len(result) == orders[pd.to_datetime(orders["order_ts"]).dt.date <= early]["user_id"].nunique()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,order_id,amount\n1,2,3.5\n", "missing column(s) order_ts"),
        (
            "user_id,order_id,order_ts,amount\n1,2,not-a-date,3.5\n",
            "column order_ts has 1 value(s) that are not a timestamp",
        ),
        (
            "user_id,order_id,order_ts,amount\n1,2,2026-09-01,lots\n",
            "column amount has 1 value(s) that are not a number",
        ),
        (
            "user_id,order_id,order_ts,amount\n1,2,2026-09-01,3.5\n1,3,2026-09-02,4.5,extra\n",
            "orders.csv line 3: 5 field(s), the header has 4",
        ),
        ("user_id,order_id,order_ts,amount\n", "has no orders (only a header?): nothing to score"),
        ("", "is empty (not even a header line)"),
    ],
)
def test_a_bad_file_gets_one_line_naming_the_problem(tmp_path, capsys, content, message):
    """In process (the command's ``main``), so the shared Spark session reads each file."""
    from jobs.cli.main import main

    bad = tmp_path / "orders.csv"
    bad.write_text(content)
    code = main(["score-customers", "--orders", str(bad), "--as-of", "2026-10-01", "--out", str(tmp_path / "o.csv")])
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], stderr[-2000:]


def test_the_command_exits_2_with_the_one_line_error(tmp_path):
    """The installed command itself, in a process of its own: exit code 2, the line on stderr."""
    bad = tmp_path / "orders.csv"
    bad.write_text("user_id,order_id,amount\n1,2,3.5\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.cli.main",
            "score-customers",
            "--orders",
            str(bad),
            "--as-of",
            "2026-10-01",
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "missing column(s) order_ts" in lines[0], result.stderr[-2000:]


def test_unsupported_extensions_are_named(tmp_path):
    with pytest.raises(ValueError, match="--out file .*use a .csv or .parquet"):
        score_file(None, str(tmp_path / "orders.csv"), LAST, str(tmp_path / "out.xlsx"))


def test_order_times_may_be_iso_8601_or_unix_epoch_seconds_or_milliseconds(tmp_path):
    from datetime import UTC, datetime

    from jobs.customers.score_file import read_orders
    from jobs.platform.config import load_config
    from jobs.platform.spark import get_spark

    when = datetime(2026, 9, 1, 12, 30, tzinfo=UTC)
    export = tmp_path / "orders.csv"
    export.write_text(
        "user_id,order_id,order_ts,amount\n"
        f"1,10,{when.isoformat()},3.5\n"
        f"2,11,{int(when.timestamp())},4.5\n"
        f"3,12,{int(when.timestamp() * 1000)},5.5\n"
    )
    spark = get_spark(load_config(environ={}))  # the session's time zone is UTC
    rows = read_orders(spark, export).selectExpr("user_id", "cast(order_ts as string) as order_ts").collect()
    assert sorted((row["user_id"], row["order_ts"]) for row in rows) == [(u, "2026-09-01 12:30:00") for u in (1, 2, 3)]
