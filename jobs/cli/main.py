"""``marketing``: the one command a person runs by hand.

    marketing simulate   write a simulated shop's event logs and source tables
    marketing run        run the nightly stages for one date (or a range) without Airflow
    marketing demo       simulate 8 months of a shop and run its last nights through Airflow
    marketing report     the nightly report of a date (HTML with plots, and JSON)
    marketing portal     the marketers' portal (lists, reports); add-user / remove-user manage accounts
    marketing score-customers  RFM, lifecycle, churn risk and value for any order export
    marketing evaluate-customers  backtest those scores beside recency, frequency, past spend, BG/NBD
    marketing airflow    the airflow CLI with this project's DAGs (standalone, dags test, backfill)
    marketing status     last runs, failures, the night's deadline, stale tables, quarantine rates
    marketing config     print the effective configuration (after MKT_* overrides)

Expected failures (bad settings or arguments, a missing input, a violated data contract,
counts that do not reconcile) print one line starting with ``error:`` and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date, timedelta

from jobs.platform.errors import ConfigError


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _number(text: str, ok, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {expected}: {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _rate(text: str) -> float:
    return _number(text, lambda v: 0 <= v <= 0.5, "between 0 and 0.5")


def _fraction(text: str) -> float:
    return _number(text, lambda v: 0 < v < 1, "between 0 and 1 (exclusive)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marketing",
        description="Nightly marketing data pipeline for online shops.",
        epilog="Configuration: config/pipeline.yaml (or MKT_CONFIG), overridable by MKT_<SECTION>__<KEY>.",
    )
    parser.add_argument("--config", help="configuration file (default: $MKT_CONFIG or config/pipeline.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every stage")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="write a simulated shop (event logs + source DB) with known ground truth",
        description=(
            "Generate a deterministic simulated shop and write what it knows by the end of --until: "
            "hourly gzipped JSON Lines event files under storage.landing_root, users/products/orders/"
            "order_items/suppressions in source.url, ground truth under storage.state_root/truth. Re-running with a "
            "later --until adds the new files and updates changed rows (incremental, idempotent)."
        ),
    )
    sim.add_argument(
        "--start-date", type=_date, default=date(2026, 9, 1), help="first simulated day (default 2026-09-01)"
    )
    sim.add_argument("--days", type=_positive, default=60, help="number of simulated days (default 60)")
    sim.add_argument("--users", type=_positive, default=2000, help="registered users at the end (default 2000)")
    sim.add_argument("--products", type=_positive, default=400, help="catalogue size (default 400)")
    sim.add_argument(
        "--sessions-per-user-per-week", type=float, default=1.5, help="mean visit rate per user (default 1.5)"
    )
    sim.add_argument("--dirt-rate", type=_rate, default=0.03, help="share of dirty records, 0 disables (default 0.03)")
    sim.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    sim.add_argument("--until", type=_date, help="write what is known by the end of this day (default: last day)")
    sim.add_argument(
        "--export-lines",
        metavar="DIR",
        help="instead: write the shop as a real shop's export, one order_lines.csv with string SKUs, guests, credit "
        "notes, postage and fee lines, wholesale lines, giant baskets, duplicates and naive local times "
        "(read it through a mapping file; README, Your shop's data)",
    )

    report = sub.add_parser(
        "report",
        help="write the nightly report of a date (HTML and JSON)",
        description="Read the warehouse for the date and write reports_root/nightly/date=D/report.html "
        "(self-contained, plots inline), report.json (the same numbers) and plots/*.png.",
    )
    report.add_argument("--date", type=_date, required=True, help="logical date YYYY-MM-DD")

    portal = sub.add_parser(
        "portal",
        help="serve the marketers' portal, or add/remove its users",
        description="Without an action: serve the portal (campaign lists to preview and download, nightly "
        "reports) until interrupted. 'add-user NAME --role ROLE' creates an account or sets a new role and "
        "password (read from standard input, never an argument); 'remove-user NAME' deletes one; 'setup' "
        "creates the portal's tables (done by the others too) and grants portal.app_role on PostgreSQL.",
    )
    portal.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    portal.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    portal.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                        help="proxies whose X-Forwarded-For/-Proto are trusted (default 127.0.0.1)")  # fmt: skip
    portal_sub = portal.add_subparsers(dest="portal_action", metavar="ACTION")
    add_user = portal_sub.add_parser("add-user", help="create a user, or change a user's role and password")
    add_user.add_argument("name", help="user name (a-z, 0-9, '.', '_', '-')")
    add_user.add_argument("--role", required=True, choices=["viewer", "marketer", "admin"])
    remove_user = portal_sub.add_parser("remove-user", help="delete a user and end their sessions")
    remove_user.add_argument("name")
    portal_sub.add_parser(
        "setup", help="create the portal's tables and grant portal.app_role (run once as the database owner)"
    )

    run = sub.add_parser(
        "run",
        help="run nightly stages for a date or a date range, without Airflow",
        description="Run the stages in order for each logical date: collect, clean, validate, load "
        "(the nightly DAG), then segments, scores, tags (the customers DAG); the recommender and the "
        "campaigns (their own DAGs) only when asked for with --stage recommender (or models) and "
        "--stage campaigns.",
    )
    run.add_argument("--date", type=_date, required=True, help="logical date YYYY-MM-DD (first date of a range)")
    run.add_argument("--to", type=_date, help="last logical date of a range (inclusive), processed in order")
    run.add_argument(
        "--stage",
        action="append",
        metavar="NAME",
        help="only this stage (repeatable): collect_events, collect_sources, clean_sources, clean_events, "
        "validate, load, segments, scores, tags, recommender, associations, allocate, export, measure, kpis, "
        "report, or the groups collect / clean / nightly / customers / models / campaigns / reports "
        "(default: nightly and customers)",
    )
    run.add_argument("--full-reload", action="store_true", help="extract source tables completely, ignoring watermarks")

    demo = sub.add_parser(
        "demo",
        help="simulate 8 months of a shop and run its last nights through Airflow",
        description="Reset data/, simulate a small shop, run the nightly, customers, recommender and campaigns "
        "DAGs with Airflow (dag.test, in this process) for the last --nights dates and print a summary.",
    )
    demo.add_argument("--nights", type=_positive, default=3, help="nights run through Airflow (default 3)")
    demo.add_argument(
        "--days", type=_positive, default=240, help="simulated days of history (default 240: the churn model learns)"
    )
    demo.add_argument("--users", type=_positive, default=2000, help="simulated users (default 2000)")
    demo.add_argument("--no-airflow", action="store_true", help="run the stages directly instead of through Airflow")

    score = sub.add_parser(
        "score-customers",
        help="RFM, lifecycle, churn risk and value for any order export (CSV or Parquet)",
        description="Score every customer of an order export with the nightly logic. Input columns: user_id, "
        "order_id, order_ts, amount and optionally status (cancelled/refunded orders are not purchases). "
        "Only orders at or before --as-of are used. Output format follows the --out extension.",
    )
    score.add_argument("--orders", required=True, metavar="FILE", help="orders as .csv or .parquet")
    score.add_argument("--as-of", required=True, type=_date, help="score as of this date (YYYY-MM-DD)")
    score.add_argument("--out", required=True, metavar="FILE", help="result as .csv or .parquet")

    backtest = sub.add_parser(
        "evaluate-customers",
        help="backtest the nightly churn and value scores on any order export, beside simple baselines",
        description="Score every customer as of --as-of exactly as the nightly stage does (orders up to that date "
        "only), then compare with what they did in the next --horizon-days: repurchase AUC, value Spearman, "
        "predicted against actual total and value by decile, for the nightly scores and the baselines recency, "
        "frequency, past spend and BG/NBD (+ Gamma-Gamma). Input: the score-customers format; the export must "
        "reach --as-of + --horizon-days. Prints the report as JSON.",
    )
    backtest.add_argument("--orders", required=True, metavar="FILE", help="orders as .csv or .parquet")
    backtest.add_argument("--as-of", required=True, type=_date, help="score as of this date (YYYY-MM-DD)")
    backtest.add_argument("--horizon-days", required=True, type=_positive, help="the outcome window after --as-of")
    backtest.add_argument("--out", metavar="FILE", help="also write the report as JSON here")

    rec = sub.add_parser(
        "evaluate-recommender",
        help="run the recommender competition (ALS, EASE, item-kNN, recent popularity) on any interaction file",
        description="Run the nightly recommender competition on any interaction file: ALS, EASE, item-kNN and recent "
        "popularity, each tuned on a validation split of the training side only; the best on validation is chosen "
        "and compared with the strongest cheap baseline on the test users (paired bootstrap interval). Input: CSV or "
        "Parquet with user_id, item_id and optionally timestamp, weight. Writes metrics.json, recommendations.csv "
        "and the split it made to --out-dir.",
    )
    source = rec.add_mutually_exclusive_group(required=True)
    source.add_argument("--interactions", metavar="FILE", help="one file, split here by --protocol")
    source.add_argument("--train", metavar="FILE", help="training interactions (with --test)")
    rec.add_argument("--test", metavar="FILE", help="test interactions (with --train)")
    rec.add_argument("--protocol", choices=["random-per-user", "temporal"], default="random-per-user",
                     help="how --interactions is split (default random-per-user; temporal: the latest interactions, "
                          "new products only, needs timestamps)")  # fmt: skip
    rec.add_argument("--test-ratio", type=_fraction, default=0.25, help="share held out for testing (default 0.25)")
    rec.add_argument("--seed", type=int, default=42, help="seed of the split and the models (default 42)")
    rec.add_argument("--k", type=_positive, default=10, help="recommendations per user and metrics at K (default 10)")
    rec.add_argument("--out-dir", required=True, metavar="DIR", help="where metrics.json and the CSVs go")

    models = sub.add_parser(
        "models",
        help="list the recommender's registered versions, promote one, or roll back",
        description="The model registry (recommender.registry_root). 'list' shows every version with its gate "
        "decision and nDCG next to the baselines; 'promote VERSION' makes a version live and republishes its "
        "recommendations; 'rollback' makes the previously live version live again.",
    )
    models.add_argument("action", choices=["list", "promote", "rollback"])
    models.add_argument("version", nargs="?", help="the version to promote")
    models.add_argument("--reason", help="why (kept in the registry's history)")

    air = sub.add_parser(
        "airflow",
        help="run the airflow CLI with this project's DAGs and embedded defaults",
        description="Pass the remaining arguments to airflow with AIRFLOW_HOME=airflow_home/ and the DAGs "
        "folder set, e.g. 'marketing airflow standalone' or 'marketing airflow dags test marketing_nightly 2026-10-30'.",
    )
    air.add_argument("airflow_args", nargs=argparse.REMAINDER, help="arguments for airflow")

    status = sub.add_parser(
        "status",
        help="last runs, failures, the night's deadline, stale tables and quarantine rates at a glance",
        description="Read the warehouse's ops tables: each stage's runs over the last --days nights, failures, "
        "whether the newest due night finished by alerts.finish_by, published tables older than that night, and "
        "per dataset the share of rows quarantined and the failed error/warning checks. Colour on a terminal "
        "(NO_COLOR turns it off).",
    )
    status.add_argument("--days", type=_positive, default=7, help="nights to show (default 7)")
    status.add_argument(
        "--date", type=_date, help="the night to check against its deadline (default: the newest one due by now)"
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument(
        "--check", action="store_true", help="exit with 1 when the due night is late or failed, or a table is stale"
    )

    source = sub.add_parser(
        "source",
        help="check the shop's data read through source.mapping_file, writing nothing",
        description="Read a sample of the mapped source (export files or the shop's own schema) and print what a "
        "night would load per entity: rows, keys, guests, credit notes, non-merchandise, time range, and the "
        "first problems, one line each. Nothing is written.",
    )
    source.add_argument("action", choices=["check"])
    source.add_argument("--sample", type=int, default=100_000, help="order lines to read (default 100000; 0: all)")
    source.add_argument("--json", action="store_true", help="print the whole result as JSON")
    sub.add_parser(
        "config", help="print the effective configuration as JSON", description="Validate and print the configuration."
    )
    sub.add_parser(
        "tags",
        help="check customers.tags_file and list the tags and the features a tag may use",
        description="Validate the tag definitions (config/tags.yaml by default) and print every source's features "
        "with their meaning, then the configured tags. Exit status 2 with a one-line error for a bad definition.",
    )
    sub.add_parser(
        "campaigns",
        help="check activation.campaigns_file and list the campaigns and the fields an audience may use",
        description="Validate the campaign definitions (config/campaigns.yaml by default) against the segments and "
        "tags they name, and print the audience fields, then the campaigns by priority. Exit status 2 with a "
        "one-line error naming the campaign and the key for a bad definition.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from jobs.platform.config import load_config
    from jobs.platform.errors import PipelineError

    try:
        config = load_config(args.config)
        return _dispatch(args, config)
    except PipelineError as exc:  # the project's own errors are one-line messages; others are bugs
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, config) -> int:
    if args.command == "config":
        from jobs.platform.config import printable

        print(json.dumps(printable(config), indent=2, default=str))
        return 0
    if args.command == "source":
        from jobs.ingest.source_map import describe_check, source_check

        result = source_check(config, sample=args.sample or None)
        print(json.dumps(result, indent=2, default=str) if args.json else describe_check(result))
        return 0
    if args.command == "tags":
        from jobs.customers.tags_config import describe_tags, load_tags

        print(describe_tags(load_tags(config.customers.tags_file)))
        return 0
    if args.command == "report":
        from jobs.platform.stages import run_stage

        print(json.dumps(run_stage(config, "report", args.date), indent=2))
        return 0
    if args.command == "portal":
        from jobs.portal import cli as portal

        if args.portal_action == "add-user":
            outcome = portal.add_user(config, args.name, args.role, portal.read_password())
            print(f"{outcome} portal user {args.name} ({args.role})")
        elif args.portal_action == "setup":
            print(portal.setup(config))
        elif args.portal_action == "remove-user":
            portal.remove_user(config, args.name)
            print(f"removed portal user {args.name}")
        else:
            portal.serve(config, args.host, args.port, args.forwarded_allow_ips)
        return 0
    if args.command == "campaigns":
        from jobs.activation.campaigns_config import describe_campaigns, load_campaigns

        settings = load_campaigns(
            config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
        )
        print(describe_campaigns(settings, config.customers.tags_file))
        return 0
    if args.command == "simulate":
        from jobs.simulator import SimulationSpec, simulate

        spec = SimulationSpec(
            seed=args.seed,
            start_date=args.start_date,
            days=args.days,
            users=args.users,
            products=args.products,
            sessions_per_user_per_week=args.sessions_per_user_per_week,
            dirt_rate=args.dirt_rate,
            timezone=config.shop.timezone,
        )
        if args.export_lines:
            from jobs.simulator import generate
            from jobs.simulator.export import write_order_lines_export

            until = args.until or spec.start_date + timedelta(days=spec.days - 1)
            print(json.dumps(write_order_lines_export(generate(spec), until, args.export_lines), indent=2))
            return 0
        print(json.dumps(simulate(config, spec, as_of=args.until), indent=2, default=str))
        return 0
    if args.command == "run":
        from jobs.platform.stages import resolve_stages, run_pipeline

        stages = resolve_stages(args.stage or ["nightly", "customers"])
        if args.full_reload:
            config = config.model_copy(update={"collect": config.collect.model_copy(update={"full_reload": True})})
        last = args.to or args.date
        if last < args.date:
            raise ConfigError(f"--to {last} is before --date {args.date}")
        day = args.date
        while day <= last:
            results = run_pipeline(config, day, stages)
            print(json.dumps({"logical_date": day.isoformat(), "stages": results}, indent=2, default=str))
            day += timedelta(days=1)
        return 0
    if args.command == "status":
        from jobs.cli.status import needs_attention, render, use_colour
        from jobs.platform.monitoring import status_report

        report = status_report(config, args.days, night=args.date)
        print(json.dumps(report, indent=2) if args.json else render(report, use_colour()))
        return 1 if args.check and needs_attention(report) else 0
    if args.command == "score-customers":
        from jobs.customers.score_file import score_file

        print(json.dumps(score_file(config, args.orders, args.as_of, args.out)))
        return 0
    if args.command == "evaluate-customers":
        from jobs.customers.backtest import evaluate_customers

        print(json.dumps(evaluate_customers(config, args.orders, args.as_of, args.horizon_days, args.out), default=str))
        return 0
    if args.command == "evaluate-recommender":
        from jobs.recommender.evaluation import evaluate_recommender

        result = evaluate_recommender(
            config, args.out_dir, interactions=args.interactions, train=args.train, test=args.test,
            protocol=args.protocol, test_ratio=args.test_ratio, seed=args.seed, k=args.k,
        )  # fmt: skip
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "models":
        from jobs.recommender.stage import models_command

        if (args.action == "promote") != bool(args.version):
            raise ConfigError("give a VERSION with promote, and only with promote (see 'marketing models list')")
        print(json.dumps(models_command(config, args.action, args.version, args.reason), indent=2, default=str))
        return 0
    if args.command == "airflow":
        from jobs.cli.airflow_env import run_airflow

        return run_airflow(args.airflow_args or ["--help"], check=False).returncode
    if args.command == "demo":
        from jobs.cli.demo import run_demo

        return run_demo(config, nights=args.nights, days=args.days, users=args.users, use_airflow=not args.no_airflow)
    raise AssertionError(args.command)


def run() -> None:
    """Console entry point: run, stop Spark cleanly, then exit without interpreter teardown.

    duckdb's bindings print spurious "nanobind: leaked ..." lines at interpreter shutdown when
    great_expectations is loaded alongside duckdb_engine; every resource is closed by then, so
    we skip the teardown instead of showing that noise to users.
    """
    code = main()
    try:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    except ImportError:  # pragma: no cover
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
