"""Benchmark (not a test): simulator speed, collect + clean + validate + load throughput, and
the customer marts (segments, scores, tags) built on the result.

    .venv/bin/python benchmarks/bench_pipeline.py [--users 10000] [--days 60] [--out FILE]

Simulates a shop (about 1 million events with the defaults), then runs every stage of ONE
nightly batch that holds all of those events (the first night sweeps the whole history:
lookback and late window are set to the simulated period), on Spark local[*] with a DuckDB
warehouse, then the customer stages for that date. Reports wall time, events/s and peak resident
memory of the whole process tree (Python driver + Spark JVM), sampled every 100 ms from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from jobs.platform.ops import PeakMemory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()

    from jobs.platform.config import load_config
    from jobs.platform.lake import landing_storage
    from jobs.platform.stages import CUSTOMER_STAGES, STAGES, stage_function
    from jobs.simulator import SimulationSpec, generate, materialize

    root = Path(tempfile.mkdtemp(prefix="mkt-bench-"))
    config = load_config(
        environ={},
        overrides={
            "storage": {name: str(root / name) for name in ("landing_root", "lake_root", "reports_root", "state_root")},
            "source": {"url": f"sqlite:///{root / 'source.db'}"},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "collect": {"lookback_days": args.days + 2},
            "clean": {"late_window_days": args.days + 2},
            "retention": {"raw_days": args.days + 20},
        },
    )
    os.environ.setdefault("MKT_PII_HASH_KEY", "benchmark-only-key-0123456789abcdef")
    memory = PeakMemory()
    results: dict[str, dict] = {}

    spec = SimulationSpec(users=args.users, days=args.days, timezone=config.shop.timezone)
    started = time.perf_counter()
    world = generate(spec)
    generate_s = time.perf_counter() - started
    last_day = spec.start_date + timedelta(days=spec.days - 1)
    started = time.perf_counter()
    materialize(world, landing_storage(config), config.source.url, last_day, root / "truth")
    write_s = time.perf_counter() - started
    events = len(world.events)
    results["simulate"] = {
        "events": events,
        "generate_s": round(generate_s, 2),
        "generate_events_per_s": round(events / generate_s),
        "write_landing_and_db_s": round(write_s, 2),
        "write_events_per_s": round(events / write_s),
    }

    lines = None
    for stage in (*STAGES, *CUSTOMER_STAGES):  # the registry maps names to "module:function"
        memory.reset()
        started = time.perf_counter()
        summary = stage_function(stage)(config, last_day)
        elapsed = time.perf_counter() - started
        if stage == "collect_events":
            lines = summary["line_count"]
        if stage == "tags":
            results["customers_profiled"] = summary["rows_by_table"]["mart_user_profile"]
        results[stage] = {
            "seconds": round(elapsed, 2),
            "peak_rss_mb": round(memory.peak / 2**20),
        }
        if stage in ("collect_events", "clean_events", "validate", "load"):
            results[stage]["events_per_s"] = round(lines / elapsed)
        print(f"{stage:<16} {elapsed:7.1f} s  peak RSS {memory.peak / 2**20:7.0f} MB", flush=True)
    memory.stop()
    event_stages = ("collect_events", "clean_events", "validate", "load")
    total = sum(results[s]["seconds"] for s in STAGES)
    results["total"] = {
        "landing_lines": lines,
        "all_stages_s": round(total, 1),
        "end_to_end_events_per_s": round(lines / total),
        "event_path_s": round(sum(results[s]["seconds"] for s in event_stages), 1),
        "peak_rss_mb": max(results[s]["peak_rss_mb"] for s in STAGES),
        "customer_stages_s": round(sum(results[s]["seconds"] for s in CUSTOMER_STAGES), 1),
        "customer_stages_peak_rss_mb": max(results[s]["peak_rss_mb"] for s in CUSTOMER_STAGES),
        "cpus": os.cpu_count(),
        "spark_master": config.spark.master,
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
