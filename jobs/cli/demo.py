"""``marketing demo``: a simulated shop, several nights through Airflow, and a summary.

1. Reset the demo's local data folders (only folders inside the project's ``data/``).
2. Simulate 240 days of a small shop with a few percent of dirty data (long enough for the
   churn model to learn: it needs 180 days of orders).
3. For each of the last nights: write what the shop knows by the end of that day (event
   files, source rows, late status changes, and the orders of customers answering the
   campaigns exported on the nights before), then run the ``marketing_nightly``,
   ``marketing_customers``, ``marketing_recommender`` and ``marketing_campaigns`` DAGs for it
   with Airflow (``dag.test()``, all in this process: one DAG parse and one Spark session for
   every night; task logs go to ``data/demo-airflow.log``).
4. Print rows per warehouse table, quarantine counts by reason, RFM groups and lifecycle
   stages, recommender metrics, each campaign's funnel, the measured lift of every cohort
   whose window closed beside the simulator's true uplift, data-quality warnings, and where
   the warehouse, lake and reports are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from jobs.platform.config import PROJECT_ROOT, PipelineConfig, masked_url
from jobs.platform.errors import ConfigError, PipelineError


def _reset_local_data(config: PipelineConfig) -> None:
    data_root = (PROJECT_ROOT / "data").resolve()
    roots = [
        config.storage.landing_root,
        config.storage.lake_root,
        config.storage.reports_root,
        config.storage.exports_root,
        config.storage.state_root,
        config.recommender.registry_root,
    ]
    for url in (config.source.url, config.warehouse.url, config.portal.database_url):
        if url.startswith(("sqlite:///", "duckdb:///")):
            roots.append(str(Path(url.split(":///", 1)[1]).parent))
    for root in roots:
        path = Path(root).resolve()
        if not root.startswith("s3://") and data_root in (path, *path.parents) and path != data_root:
            shutil.rmtree(path, ignore_errors=True)
        elif not root.startswith("s3://") and path.exists():
            raise ConfigError(f"refusing to reset {path}: the demo only resets folders inside {data_root}")


DEMO_DAGS = ("marketing_nightly", "marketing_customers", "marketing_recommender", "marketing_campaigns")


def run_nightly_via_airflow(config: PipelineConfig, day: date, runner) -> tuple[dict[str, float], list[str]]:
    """The nightly DAG, then the customers, recommender and campaigns DAGs it triggers in
    production (asset-scheduled), each run by Airflow (``dag.test()``, in this process). A
    recommender refused by its quality gate is reported, not fatal: the previous lists stay
    live and the campaigns use them, as in production. Returns seconds per DAG and notes."""
    seconds, notes = {}, []
    for dag_id in DEMO_DAGS:
        started = time.monotonic()
        failed = runner.run(dag_id, day.isoformat())
        seconds[dag_id] = time.monotonic() - started
        if failed == ["recommender"] and (reason := gate_refusal(config, day)):
            notes.append(f"  night {day}: recommender not published: {reason}")
        elif failed:
            raise PipelineError(f"Airflow run of {dag_id} for {day} failed in task(s) {', '.join(failed)}")
    return seconds, notes


def gate_refusal(config: PipelineConfig, day: date) -> str | None:
    """The quality gate's reason when it refused the recommender of ``day`` (from ops_pipeline_runs)."""
    import json

    from jobs.platform.warehouse import engine_for

    engine = engine_for(config)
    with engine.connect() as conn:
        details = conn.execute(
            sa.text(
                f"select details_json from {config.warehouse.schema_name}.ops_pipeline_runs "
                "where stage = 'recommender' and logical_date = :d and status = 'failed'"
            ),
            {"d": day},
        ).scalar()
    engine.dispose()
    return json.loads(details).get("gate") if details else None


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's standard output and error (file descriptors 1 and 2: Python, Airflow's
    task logs and the Spark JVM it starts) to ``path`` while the DAGs run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def summary(config: PipelineConfig, nights: list[date]) -> str:
    from jobs.platform.warehouse import engine_for, table_counts

    engine = engine_for(config)
    schema = config.warehouse.schema_name
    counts = table_counts(engine, schema)
    with engine.connect() as conn:
        quarantine = conn.execute(
            sa.text(
                f"select dataset, reason, sum(row_count) from {schema}.ops_quarantine_daily "
                "group by dataset, reason order by dataset, reason"
            )
        ).all()
        runs = conn.execute(
            sa.text(
                f"select logical_date, dataset, rows_in, rows_out, rows_quarantined, rows_duplicate "
                f"from {schema}.ops_pipeline_runs where stage = 'clean' order by logical_date, dataset"
            )
        ).all()
        groups = conn.execute(
            sa.text(
                f"select rfm_group, count(*) from {schema}.mart_user_rfm "
                f"where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_rfm) "
                "group by rfm_group order by count(*) desc"
            )
        ).all()
        stages = conn.execute(
            sa.text(
                f"select lifecycle_stage, count(*) from {schema}.mart_user_lifecycle "
                f"where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_lifecycle) "
                "group by lifecycle_stage order by count(*) desc"
            )
        ).all()
        models = conn.execute(
            sa.text(
                f"select model_version, model, value, is_published from {schema}.mart_model_evaluation "
                "where user_group = 'all' and metric = 'ndcg@10' order by model_version, model"
            )
        ).all()
        lists = conn.execute(
            sa.text(
                f"select reason_code, count(distinct user_id) from {schema}.v_recommendations_latest group by 1 order by 1"
            )
        ).all()
        warnings = conn.execute(
            sa.text(
                f"select logical_date, dataset, check_name from {schema}.ops_data_quality "
                "where not is_success order by logical_date, dataset, check_name"
            )
        ).all()
    engine.dispose()
    lines = [f"Nights processed through Airflow: {', '.join(d.isoformat() for d in nights)}", "", "Warehouse rows:"]
    lines += [f"  {table:<24}{n:>10,}" for table, n in counts.items()]
    lines += ["", "Reconciliation (input = clean + quarantined + duplicates):"]
    lines += [
        f"  {d} {ds:<12} in {i:>8,}  clean {o:>8,}  quarantined {q:>6,}  duplicates {dup:>6,}"
        for d, ds, i, o, q, dup in runs
    ]
    lines += ["", "Quarantined rows by reason:"]
    lines += [f"  {ds:<12}{reason:<26}{int(n):>8,}" for ds, reason, n in quarantine] or ["  none"]
    lines += ["", f"Customers on {nights[-1]} by RFM group:"]
    lines += [f"  {name:<22}{n:>8,}" for name, n in groups] or ["  none"]
    lines += ["", "... and by lifecycle stage:"]
    lines += [f"  {name:<22}{n:>8,}" for name, n in stages] or ["  none"]
    lines += ["", "Recommender nDCG@10 of each model on each night's holdout (* = a model was published):"]
    by_version: dict[str, dict] = {}
    for version, model, value, published in models:
        by_version.setdefault(version, {"published": False})[model] = value
        by_version[version]["published"] |= bool(published)
    names = {"als": "ALS", "ease": "EASE", "item_knn": "item-kNN", "popularity": "popularity"}
    lines += [
        f"  {v}{'*' if m.pop('published') else ' '} "
        + "  ".join(f"{names.get(model, model)} {value:.3f}" for model, value in sorted(m.items()))
        for v, m in by_version.items()
    ] or ["  none"]
    lines += [f"  customers with a list: {n:,} ({reason})" for reason, n in lists]
    lines += campaign_summary(config, nights[-1])
    lines += ["", "Data-quality checks not passed (warnings; errors would have blocked publishing):"]
    lines += [f"  {d} {ds:<12}{name}" for d, ds, name in warnings] or ["  none"]
    lines += [
        "",
        f"Warehouse : {masked_url(config.warehouse.url)}",
        f"Lake      : {config.storage.lake_root}  (raw/, clean/, quarantine/, restricted/)",
        f"Report    : {config.storage.reports_root}/nightly/date={nights[-1]}/report.html  (open it in a browser)",
        f"Data Docs : {config.storage.reports_root}/data_docs/index.html  (Great Expectations)",
        "Airflow UI: make airflow  (then open http://localhost:8080)",
    ]
    return "\n".join(lines)


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def campaign_summary(config: PipelineConfig, night: date) -> list[str]:
    """Each campaign's funnel on ``night``, and the measured lift of every cohort whose window
    closed beside the true uplift the simulator planted (its truth ``campaign_responses``)."""
    import pandas as pd

    from jobs.platform.warehouse import engine_for, query_frame

    schema = config.warehouse.schema_name
    engine = engine_for(config)
    with engine.connect() as conn:
        funnel = query_frame(
            conn, f"select * from {schema}.mart_campaign_funnel where snapshot_date = :d order by priority", d=night
        )
        results = query_frame(
            conn,
            f"select * from {schema}.mart_campaign_results where adjustment = 'none' "
            "order by cohort_date, campaign_id, metric <> 'orders_per_customer'",
        )
    # one row per cohort: its orders-per-customer lift, else the note saying why there is none
    results = results.drop_duplicates(["campaign_id", "cohort_date"])
    engine.dispose()
    lines = ["", f"Campaigns on {night} (eligible, then where they went; control and target are contacted):"]
    lines += [
        f"  {r.campaign_id:<24}{r.channel:<6}eligible {r.eligible:>5,}  no consent {r.suppressed_no_consent:>4,}"
        f"  suppressed {r.suppressed_list:>3,}  global holdout {r.suppressed_global_holdout:>3,}"
        f"  recently sent {r.recently_contacted:>4,}  lower priority {r.lost_to_priority:>4,}"
        f"  capped {r.capped:>4,}  control {r.control:>4,}"
        f"  target {r.target:>5,}  exported {int(r.exported or 0):>5,}"
        for r in funnel.itertuples()
    ] or ["  none active"]
    truth_file = Path(config.storage.state_root) / "truth" / "campaign_responses.parquet"
    truth = pd.read_parquet(truth_file) if truth_file.exists() else pd.DataFrame()
    lines += ["", "Measured lift in orders per customer (target - control, 95% interval) vs the simulator's truth:"]
    if results.empty:
        lines.append("  no cohort's attribution window has closed yet")
    for r in results.itertuples():
        head = f"  {r.campaign_id:<24}contacted {r.cohort_date}  target {r.n_target:>5,}  control {r.n_control:>4,}  "
        if r.metric != "orders_per_customer" or pd.isna(r.abs_lift):
            lines.append(head + f"not measured: {r.note or 'no lift'}")
            continue
        measured = f"{_signed(r.abs_lift)} [{_signed(r.abs_ci_low)}, {_signed(r.abs_ci_high)}]"
        if not r.is_valid:
            measured += f" (invalid: {r.note})"
        if not truth.empty and r.campaign_id != "programme":  # the programme's truth is every campaign's
            mine = truth[(truth["campaign_id"] == r.campaign_id) & (truth["contact_date"] == r.cohort_date)]
            uplift = float(mine["true_uplift"].iloc[0]) if len(mine) else 0.0
            # the truth is per contacted customer; the target group also holds anyone not exported
            true = uplift * len(mine) / r.n_target if r.n_target else 0.0
            inside = "inside" if r.abs_ci_low <= true <= r.abs_ci_high else "OUTSIDE"
            measured += f"  true {_signed(true)} ({inside} the interval)"
        lines.append(head + measured)
    return lines


def run_demo(
    config: PipelineConfig, nights: int = 3, days: int = 240, users: int = 2000, use_airflow: bool = True
) -> int:
    from jobs.activation.export import exports_storage
    from jobs.cli.airflow_env import InProcessDags, airflow_env, ensure_metadata_db, enter_airflow_env
    from jobs.platform.errors import ModelGateError
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import run_pipeline
    from jobs.simulator import SimulationSpec, generate, materialize

    started = time.monotonic()
    if nights >= days:
        raise ConfigError(f"--nights ({nights}) must be smaller than --days ({days})")
    _reset_local_data(config)
    spec = SimulationSpec(days=days, users=users, timezone=config.shop.timezone)
    print(f"Simulating {days} days of a shop with {users:,} users ...", flush=True)
    world = generate(spec)
    last_day = spec.start_date + timedelta(days=days - 1)
    run_days = [last_day - timedelta(days=offset) for offset in range(nights - 1, -1, -1)]
    truth_dir = Path(config.storage.state_root) / "truth"
    exports = exports_storage(config)  # customers answer the campaigns exported on earlier nights
    materialize(world, landing_storage(config), config.source.url, run_days[0] - timedelta(days=1), truth_dir, exports)
    runner, log_path = None, PROJECT_ROOT / "data" / "demo-airflow.log"
    if use_airflow:
        print(f"Preparing Airflow (SQLite metadata in airflow_home/; task logs in {log_path}) ...", flush=True)
        env = airflow_env()
        ensure_metadata_db(env)
        enter_airflow_env(env)  # the DAGs run in this process: one parse, one Spark session for all nights
        runner = InProcessDags()
    for day in run_days:
        materialize(world, landing_storage(config), config.source.url, day, truth_dir, exports)
        night_started = time.monotonic()
        if runner is not None:
            try:
                with output_to(log_path):
                    seconds, notes = run_nightly_via_airflow(config, day, runner)
            except PipelineError as exc:
                raise PipelineError(f"{exc}; the task logs are in {log_path}") from None
            print("\n".join(notes) or "", end="\n" if notes else "", flush=True)
            print("  " + ", ".join(f"{d.removeprefix('marketing_')} {s:.0f}s" for d, s in seconds.items()), flush=True)
        else:
            run_pipeline(config, day, ["nightly", "customers"])
            try:
                run_pipeline(config, day, ["models"])
            except ModelGateError as exc:
                print(f"  night {day}: {exc}", flush=True)
            run_pipeline(config, day, ["campaigns"])
        print(f"  night {day}: done in {time.monotonic() - night_started:.0f}s", flush=True)
    print()
    print(summary(config, run_days))
    print(portal_accounts(config))
    print(f"\nDemo finished in {time.monotonic() - started:.0f}s")
    return 0


DEMO_ACCOUNTS = (("demo", "marketer"), ("demo-admin", "admin"))


def portal_accounts(config: PipelineConfig) -> str:
    """Demo accounts for the portal, each with a fresh random password, and how to open it."""
    import secrets

    from jobs.portal.cli import add_user

    lines = ["Portal    : .venv/bin/marketing portal   then open http://127.0.0.1:8000/ and sign in as"]
    for name, role in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(12)
        while name in password.lower():  # the password may not contain the name
            password = secrets.token_urlsafe(12)
        add_user(config, name, role, password)
        lines.append(f"            {name} / {password}   ({role})")
    return "\n".join(lines)
