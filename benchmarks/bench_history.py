"""Benchmark (not a test): does a night's cost follow the night's volume, not the history?

    .venv/bin/python benchmarks/bench_history.py [--users 20000] [--early 30] [--late 180] [--out FILE]

The same simulated shop (same size, same seed) is brought to day ``early`` and to day
``late`` of its life: the first night sweeps the whole history in, then the next night is
timed per stage as ``marketing run`` does it (see ``bench_overhead.py``). The two shops start
``late - early`` days apart so that both timed nights fall on the same calendar date (same
weekday, same season): what differs is the history behind them. Tags, customer features and the
recommender's interactions look back 90, 180 and 365 days, so without incremental aggregates
the late night would rescan six times the history of the early one. Reports both nights per
stage and the late/early ratio of the nightly, customer and recommender stages (target: at
most 1.3).
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path

from bench_overhead import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--early", type=int, default=30, help="the early night's day (default 30)")
    parser.add_argument("--late", type=int, default=180, help="the late night's day (default 180)")
    parser.add_argument("--night", default="2027-03-03", help="the timed night's date (default 2027-03-03)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    # day N is the (N+1)th simulated day: the first N days are history, swept in on night N-1
    night = date.fromisoformat(args.night)
    early = measure(args.users, args.early + 1, 1, night - timedelta(days=args.early))["steady_night"]
    late = measure(args.users, args.late + 1, 1, night - timedelta(days=args.late))["steady_night"]
    groups = ("nightly_s", "customers_s", "recommender_s")
    total = {name: round(sum(timed[g] for g in groups), 1) for name, timed in (("early", early), ("late", late))}
    # the target: nightly and customer stages (the recommender trains on its whole 180-day window)
    target = {
        name: round(timed["nightly_s"] + timed["customers_s"], 1) for name, timed in (("early", early), ("late", late))
    }
    results = {
        "users": args.users,
        "night": args.night,
        "early": {"day": args.early, **early, "total_s": total["early"]},
        "late": {"day": args.late, **late, "total_s": total["late"]},
        "late_over_early": {
            **{g: round(late[g] / early[g], 2) for g in groups},
            "total": round(total["late"] / total["early"], 2),
            "nightly_and_customers": round(target["late"] / target["early"], 2),
        },
    }
    width = max(len(s) for s in early["stage_s"])
    print(f"\n{'stage':<{width}}  day {args.early:>3}  day {args.late:>3}")
    for stage, seconds in early["stage_s"].items():
        print(f"{stage:<{width}}  {seconds:6.1f} s  {late['stage_s'][stage]:6.1f} s")
    ratio = results["late_over_early"]
    for label, pair, key in (("nightly + customers", target, "nightly_and_customers"), ("total", total, "total")):
        print(f"{label:<{width}}  {pair['early']:6.1f} s  {pair['late']:6.1f} s  ({ratio[key]}x)")
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
