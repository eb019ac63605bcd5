"""``marketing demo``: a simulated shop, several nights through Airflow, and a summary.

1. Reset the demo's local data folders (only folders inside the project's ``data/``).
2. Simulate ~60 days of a small shop with a few percent of dirty data.
3. For each of the last nights: write what the shop knows by the end of that day (event
   files, source rows, late status changes), then run the ``marketing_nightly`` DAG and the
   ``marketing_customers`` and ``marketing_recommender`` DAGs for it with ``airflow dags test``.
4. Print rows per warehouse table, quarantine counts by reason, RFM groups and lifecycle
   stages, data-quality warnings, and where the warehouse, lake and reports are.
"""

from __future__ import annotations

import shutil
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
        config.storage.state_root,
    ]
    for url in (config.source.url, config.warehouse.url):
        if url.startswith(("sqlite:///", "duckdb:///")):
            roots.append(str(Path(url.split(":///", 1)[1]).parent))
    for root in roots:
        path = Path(root).resolve()
        if not root.startswith("s3://") and data_root in (path, *path.parents) and path != data_root:
            shutil.rmtree(path, ignore_errors=True)
        elif not root.startswith("s3://") and path.exists():
            raise ConfigError(f"refusing to reset {path}: the demo only resets folders inside {data_root}")


def run_nightly_via_airflow(day: date, env: dict[str, str]) -> None:
    """The nightly DAG, then the customers and recommender DAGs it triggers in production
    (asset-scheduled). A recommender refused by its quality gate is reported, not fatal: the
    previous lists stay live, as in production."""
    from jobs.cli.airflow_env import dags_test

    for dag_id in ("marketing_nightly", "marketing_customers", "marketing_recommender"):
        result = dags_test(dag_id, day.isoformat(), env)
        output = result.stdout + result.stderr
        if result.returncode != 0 and dag_id == "marketing_recommender" and "ModelGateError" in output:
            print(f"  night {day}: recommender not published: {gate_reason(output)}", flush=True)
        elif result.returncode != 0:
            tail = "\n".join(output.splitlines()[-40:])
            raise PipelineError(f"airflow dags test {dag_id} for {day} failed:\n{tail}")


def gate_reason(task_output: str) -> str:
    """The gate's own message from a failed recommender run's log: the text after the
    exception's name on the failure alert line, not the line of source that raised it."""
    marker = "ModelGateError: "
    for line in reversed(task_output.splitlines()):
        if marker in line and "raise " not in line:
            return line.split(marker, 1)[1].strip()[:300]
    return "see the task log"


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
    lines += ["", "Recommender nDCG@10 on each night's holdout (* = published):"]
    by_version: dict[str, dict] = {}
    for version, model, value, published in models:
        by_version.setdefault(version, {"published": False})[model] = value
        by_version[version]["published"] |= bool(published)
    lines += [
        f"  {v}{'*' if m['published'] else ' '} ALS {m.get('als', 0):.3f}  popularity {m.get('popularity', 0):.3f}"
        f"  item-kNN {m.get('item_knn', 0):.3f}"
        for v, m in by_version.items()
    ] or ["  none"]
    lines += [f"  customers with a list: {n:,} ({reason})" for reason, n in lists]
    lines += ["", "Data-quality checks not passed (warnings; errors would have blocked publishing):"]
    lines += [f"  {d} {ds:<12}{name}" for d, ds, name in warnings] or ["  none"]
    lines += [
        "",
        f"Warehouse : {masked_url(config.warehouse.url)}",
        f"Lake      : {config.storage.lake_root}  (raw/, clean/, quarantine/, restricted/)",
        f"Reports   : {config.storage.reports_root}/data_docs/index.html  (Great Expectations Data Docs)",
        "Airflow UI: make airflow  (then open http://localhost:8080)",
    ]
    return "\n".join(lines)


def run_demo(
    config: PipelineConfig, nights: int = 3, days: int = 60, users: int = 2000, use_airflow: bool = True
) -> int:
    from jobs.cli.airflow_env import airflow_env, ensure_metadata_db
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
    materialize(world, landing_storage(config), config.source.url, run_days[0] - timedelta(days=1), truth_dir)
    env = None
    if use_airflow:
        print("Preparing Airflow (SQLite metadata in airflow_home/) ...", flush=True)
        env = airflow_env()
        ensure_metadata_db(env)
    for day in run_days:
        materialize(world, landing_storage(config), config.source.url, day, truth_dir)
        night_started = time.monotonic()
        if use_airflow:
            run_nightly_via_airflow(day, env)
        else:
            run_pipeline(config, day, ["nightly", "customers"])
            try:
                run_pipeline(config, day, ["models"])
            except ModelGateError as exc:
                print(f"  night {day}: {exc}", flush=True)
        print(f"  night {day}: done in {time.monotonic() - night_started:.0f}s", flush=True)
    print()
    print(summary(config, run_days))
    print(f"\nDemo finished in {time.monotonic() - started:.0f}s")
    return 0
