"""Benchmark (not a test): scale tiers S/M/L, each Spark stage beside DuckDB on the same data.

    .venv/bin/python benchmarks/bench_tiers.py [--tiers S,M,L] [--out FILE]

Per tier a shop is simulated and its history is swept in as one nightly batch (as
``bench_pipeline.py`` does), every stage run as ``marketing run`` runs it (``run_stage``, with
its ``ops_stage_runs`` record of wall time and peak memory of the process tree). In the same
run, on the same data, the DuckDB peers (``benchmarks/peers``) run the same logic: the event
cleaning over the same landing files, and RFM over the same Parquet; each is checked to give
exactly what Spark gave (counts, reasons, rows), or the benchmark fails. Reports per tier and
stage: seconds, events per second, peak memory, and Spark/DuckDB where a peer exists (target:
at most 3x at the largest tier).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent / "peers"))
from check_peers import check_nights  # noqa: E402

# users x days: the largest (L) fits this 2-core, 24 GiB machine with room to spare
TIERS = {"S": (2_000, 30), "M": (10_000, 60), "L": (40_000, 60)}


def run_tier(name: str, users: int, days: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"mkt-bench-tier-{name}-"))
    try:
        ((night, result),) = list(check_nights(root, users, days, 1, None))
        engine = sa.create_engine(f"duckdb:///{root / 'warehouse.duckdb'}")
        with engine.connect() as conn:
            peaks = dict(conn.execute(sa.text("select stage, peak_rss_mb from ops_stage_runs")).all())
        engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if result["problems"]:
        raise SystemExit(f"tier {name}: the DuckDB peers differ from Spark: {result['problems']}")
    clean, rfm = result["clean_events"], result["rfm"]
    lines = clean["spark_counts"]["input"]
    stages = {
        stage: {
            "seconds": seconds,
            "events_per_s": round(lines / seconds)
            if stage.endswith("_events") or stage in ("validate", "load")
            else None,
            "peak_rss_mb": round(peaks[stage]) if peaks.get(stage) else None,
        }
        for stage, seconds in result["spark_s"].items()
    }
    stages["clean_events"]["duckdb_s"] = clean["duckdb_s"]
    stages["clean_events"]["spark_over_duckdb"] = round(result["spark_s"]["clean_events"] / clean["duckdb_s"], 1)
    stages["rfm"] = {
        "seconds": rfm["spark_s"],
        "duckdb_s": rfm["duckdb_s"],
        "spark_over_duckdb": round(rfm["spark_s"] / max(rfm["duckdb_s"], 0.001), 1),
        "customers": rfm["customers"],
    }
    return {"users": users, "days": days, "night": night.isoformat(), "landing_lines": lines, "stages": stages}


def markdown(results: dict) -> str:
    rows = [
        "| tier | stage | Spark s | events/s | peak RSS | DuckDB s | Spark/DuckDB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tier, result in results["tiers"].items():
        label = f"{tier} ({result['users']:,} users, {result['days']} days, {result['landing_lines']:,} lines)"
        for stage, figures in result["stages"].items():
            rows.append(
                f"| {label} | {stage} | {figures['seconds']:.1f} | {figures.get('events_per_s') or '—'} | "
                f"{str(figures['peak_rss_mb']) + ' MB' if figures.get('peak_rss_mb') else '—'} | {figures.get('duckdb_s', '—')} | "
                f"{str(figures['spark_over_duckdb']) + 'x' if 'spark_over_duckdb' in figures else '—'} |"
            )
            label = ""
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="S,M,L", help="comma-separated, of S, M, L (default all)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("MKT_PII_HASH_KEY", "benchmark-only-key-0123456789abcdef")
    results = {"cpus": os.cpu_count(), "tiers": {}}
    for tier in args.tiers.split(","):
        users, days = TIERS[tier]
        results["tiers"][tier] = run_tier(tier, users, days)
        print(markdown(results), flush=True)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
