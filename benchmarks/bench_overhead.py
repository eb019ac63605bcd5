"""Benchmark (not a test): the fixed overhead of a night, per stage, where the data is tiny.

    .venv/bin/python benchmarks/bench_overhead.py [--users 300] [--days 15] [--out FILE]

Simulates a tiny shop, runs its first night (which sweeps the short history) and then times
every stage of the next nights as ``marketing run`` does them (``run_stage``: warehouse lock,
ops records), all in one process. The first night shows the one-off costs of a process (the
Spark session, the Great Expectations import); the last night is what any night costs whatever
its volume: a shop's night costs at least this. Reports seconds per stage and the peak
resident memory of the process tree (``ops_stage_runs.peak_rss_mb``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--nights", type=int, default=3, help="nights timed after the first (default 3)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    results = measure(args.users, args.days, args.nights)
    print(json.dumps(results, indent=2, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


def measure(users: int, days: int, nights_timed: int, start: date | None = None) -> dict:
    """Simulate ``users`` x ``days`` (from ``start``, default the simulator's), run the first
    night (sweeping the history) and time the ``nights_timed`` nights after it, per stage;
    prints a table and returns the figures."""
    import sqlalchemy as sa

    from jobs.platform.config import load_config
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import CUSTOMER_STAGES, MODEL_STAGES, STAGES, run_stage
    from jobs.simulator import SimulationSpec, generate, materialize

    root = Path(tempfile.mkdtemp(prefix="mkt-bench-overhead-"))
    overrides = {
        "storage": {
            name: str(root / name)
            for name in ("landing_root", "lake_root", "reports_root", "exports_root", "state_root")
        },
        "source": {"url": f"sqlite:///{root / 'source.db'}"},
        "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
        "recommender": {"registry_root": str(root / "models")},
        "retention": {"raw_days": days + 20},
    }
    # The first night sweeps the whole history in; the timed nights run on the defaults (a
    # late window as wide as the history would make every night re-read it for duplicates).
    config = load_config(environ={}, overrides=overrides)
    sweep = load_config(
        environ={},
        overrides={**overrides, "collect": {"lookback_days": days + 2}, "clean": {"late_window_days": days + 2}},
    )
    os.environ.setdefault("MKT_PII_HASH_KEY", "benchmark-only-key-0123456789abcdef")
    spec = SimulationSpec(users=users, days=days, timezone=config.shop.timezone)
    if start is not None:
        spec = dataclasses.replace(spec, start_date=start)
    world = generate(spec)
    last = spec.start_date + timedelta(days=spec.days - 1)
    nights = [last - timedelta(days=k) for k in range(nights_timed, -1, -1)]
    stages = [*STAGES, *CUSTOMER_STAGES, *MODEL_STAGES]
    per_night: dict[str, dict] = {}
    for night in nights:
        materialize(world, landing_storage(config), config.source.url, night, root / "truth")
        started = time.perf_counter()
        for stage in stages:
            run_stage(sweep if night == nights[0] else config, stage, night)
        per_night[night.isoformat()] = {"wall_s": round(time.perf_counter() - started, 1)}
    engine = sa.create_engine(config.warehouse.url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select logical_date, stage, duration_s, peak_rss_mb from ops_stage_runs "
                "where logical_date >= :first order by logical_date, started_at"
            ),
            {"first": nights[0]},
        ).all()
        lines = dict(
            conn.execute(
                sa.text(
                    "select logical_date, rows_in from ops_pipeline_runs where stage = 'collect' and dataset = 'events'"
                )
            ).all()
        )
    engine.dispose()
    for day, stage, seconds, peak in rows:
        entry = per_night[str(day)]
        entry[stage] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak) if peak else None}
        entry["landing_lines"] = lines.get(day)
    first, steady = per_night[nights[0].isoformat()], per_night[nights[-1].isoformat()]
    results = {
        "nights": per_night,
        "first_night": {"stage_s": {s: first[s]["seconds"] for s in stages}, "wall_s": first["wall_s"]},
        "steady_night": {
            "landing_lines": steady["landing_lines"],
            "stage_s": {s: steady[s]["seconds"] for s in stages},
            "nightly_s": round(sum(steady[s]["seconds"] for s in STAGES), 1),
            "customers_s": round(sum(steady[s]["seconds"] for s in CUSTOMER_STAGES), 1),
            "recommender_s": round(sum(steady[s]["seconds"] for s in MODEL_STAGES), 1),
            "peak_rss_mb": max(steady[s]["peak_rss_mb"] or 0 for s in stages),
        },
        "data": {"users": users, "days": days, "cpus": os.cpu_count(), "spark_master": config.spark.master},
    }
    width = max(len(s) for s in stages)
    print(f"{'stage':<{width}}  first night  steady night")
    for stage in stages:
        print(f"{stage:<{width}}  {first[stage]['seconds']:9.1f} s  {steady[stage]['seconds']:10.1f} s")
    shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
