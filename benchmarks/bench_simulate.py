"""Benchmark of the shop simulator: generate ~1,000,000 events, then write the landing files.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--users 10000] [--days 60]``

Prints events/s for :func:`jobs.simulator.generate` and lines/s for writing the gzipped JSON
Lines landing files into a local directory in a temporary folder, then the time of the rest
of :func:`jobs.simulator.materialize` (source DB sync into SQLite, truth Parquet files).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.platform.storage import open_storage  # noqa: E402
from jobs.simulator import world as sim  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="~100 events per user over 60 days")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    spec = sim.SimulationSpec(seed=args.seed, days=args.days, users=args.users, products=args.products)

    started, cpu = time.perf_counter(), time.process_time()
    world = sim.generate(spec)
    generate_s, generate_cpu = time.perf_counter() - started, time.process_time() - cpu
    n_events = len(world.events)
    print(
        f"generate: {n_events:,} events, {len(world.orders):,} orders in {generate_s:.2f} s "
        f"(cpu {generate_cpu:.2f} s) -> {n_events / generate_s:,.0f} events/s"
    )

    as_of = spec.start_date + timedelta(days=spec.days - 1)
    end_ns = sim._end_of_day_ns(as_of, spec.timezone)
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        landing = open_storage(str(Path(tmp) / "landing"))
        started, cpu = time.perf_counter(), time.process_time()
        written = sim._write_landing(world, landing, end_ns)
        write_s, write_cpu = time.perf_counter() - started, time.process_time() - cpu
        lines = written["lines_written"]
        print(
            f"landing: {written['files_written']:,} files, {lines:,} lines, "
            f"{written['bytes_written'] / 1e6:.1f} MB gzip in {write_s:.2f} s "
            f"(cpu {write_cpu:.2f} s, all threads) -> {lines / write_s:,.0f} lines/s"
        )

        started = time.perf_counter()
        summary = sim.materialize(world, landing, f"sqlite:///{tmp}/source/shop.db", as_of, Path(tmp) / "truth")
        rest_s = time.perf_counter() - started
        print(
            f"materialize (landing already there: {summary['files_written']} new files; "
            f"DB sync {sum(summary['rows_upserted'].values()):,} rows; truth): {rest_s:.2f} s"
        )
    print(
        f"total: {generate_s + write_s + rest_s:.2f} s on {os.cpu_count()} cpus, "
        f"load average before start {load[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
