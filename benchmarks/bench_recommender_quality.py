"""Benchmark (not a test): how good the nightly recommender is on a simulated shop.

    .venv/bin/python benchmarks/bench_recommender_quality.py [--days 60] [--users 6000]
        [--products 400] [--seed 42] [--trials N] [--out FILE]

Runs :func:`jobs.recommender.study.study`: the nightly evaluation (temporal holdout, tuning on
a validation window cut from the training side, lists that exclude what the user owns) of a
simulated shop's last day. Prints every model's metrics at K, ALS's lift over the baselines,
the tuned parameters and how often ALS's lists hit the user's planted favourite taste.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, help="tuning budget (default: config/recommender.yaml)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    from jobs.platform.config import load_config
    from jobs.recommender.settings import load_recommender
    from jobs.recommender.study import study
    from jobs.simulator import SimulationSpec

    config = load_config()
    settings = load_recommender(config.recommender.config_file)
    if args.trials:
        settings = settings.model_copy(
            update={"tuning": settings.tuning.model_copy(update={"max_trials": args.trials})}
        )
    spec = SimulationSpec(seed=args.seed, days=args.days, users=args.users, products=args.products)
    summary, _ = study(config, spec, settings)
    with pd.option_context("display.width", 160):
        print(pd.DataFrame(summary["metrics"]).round(4).to_string())
    print(json.dumps({key: value for key, value in summary.items() if key != "metrics"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
