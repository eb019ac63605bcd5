"""Benchmark (not a test): does a big shop's FIRST night publish every order line?

    .venv/bin/python benchmarks/bench_first_night.py --out benchmarks/results/first-night-700k.json
    .venv/bin/python benchmarks/bench_first_night.py [--order-lines 700000] [--night 2027-03-03]
        [--workdir DIR] [--keep] [--out FILE]

A duckdb bug once dropped, without an error, every row of a batch of 122,880 rows or more when
the load stage published to the warehouse; the simulated shops of the tests are far too small to
see it. This script writes a big shop's source database straight away (SQLite, the tables and
columns the simulator writes: users, products, orders, order_items, suppressions): with the
defaults 700,000 order lines in about 140,000 orders (1 to 9 lines, 5 on average) of 20,000
customers on 4,000 products, every row valid and changed within the year before the night, so
the first night extracts the whole history (no earlier watermark: a full extract). There are no
behaviour events: the landing folder exists and is empty. Then the nightly stages run for that
night exactly as ``marketing run --date D --stage nightly`` runs them (``run_pipeline``: warehouse
lock, ``ops_stage_runs`` records), on the embedded defaults (DuckDB file warehouse and local lake
in the work folder, Spark ``local[*]``).

Read back and reported, per dataset (order_items, orders, users, products): the source rows, the
clean stage's ``rows_out`` (``ops_pipeline_runs``), the rows of the published table
(fct_order_items, fct_orders, dim_user, dim_product) and its ``ops_table_freshness.rows_published``;
and the wall time of every stage (``ops_stage_runs``). Exits 1 (saying which) if the nightly run
fails or fct_order_items does not hold exactly the clean rows and the source rows of order_items.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

SEED = 20270303
# dataset (source table) -> published warehouse table
PUBLISHED = {
    "order_items": "fct_order_items",
    "orders": "fct_orders",
    "users": "dim_user",
    "products": "dim_product",
}
US_PER_DAY = 86_400 * 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-lines", type=int, default=700_000, help="order lines in the source (default 700000)")
    parser.add_argument("--night", default="2027-03-03", help="the first night's logical date (default 2027-03-03)")
    parser.add_argument(
        "--workdir", help="an empty (or new) folder for the shop; kept afterwards (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.order_lines < 1:
        parser.error("--order-lines must be at least 1")
    night = date.fromisoformat(args.night)
    if args.workdir:
        root = Path(args.workdir).resolve()
        if root.exists() and any(root.iterdir()):
            parser.error(f"--workdir {root} is not empty: a first night needs a shop that never ran")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="mkt-bench-first-night-"))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("jobs").setLevel(logging.INFO)  # a line per stage, to follow a long run
    print(f"work folder: {root}", flush=True)
    try:
        results = measure(root, args.order_lines, night)
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    for problem in results["problems"]:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not results["problems"]:
        lines = results["datasets"]["order_items"]["published"]
        print(f"OK: fct_order_items holds all {lines:,} order lines of the first night")
    return 1 if results["problems"] else 0


def first_night_config(root: Path):
    """The embedded defaults with every path in ``root`` (as bench_overhead builds them); the
    landing root exists and stays empty."""
    from jobs.platform.config import load_config

    (root / "landing").mkdir(parents=True, exist_ok=True)
    return load_config(
        environ={},
        overrides={
            "storage": {
                f"{name}_root": str(root / name) for name in ("landing", "lake", "reports", "exports", "state")
            },
            "source": {"url": f"sqlite:///{root / 'source.db'}"},
            "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
            "recommender": {"registry_root": str(root / "models")},
        },
    )


def measure(root: Path, order_lines: int, night: date) -> dict:
    """Build the shop under ``root``, run its first night, read the counts back."""
    import duckdb

    from jobs.platform.lake import window_for
    from jobs.platform.stages import STAGES, run_pipeline

    config = first_night_config(root)
    os.environ.setdefault("MKT_PII_HASH_KEY", "benchmark-only-key-0123456789abcdef")
    window = window_for(night, config.tz)
    started = time.perf_counter()
    tables = generate_shop(order_lines, int(window.end.timestamp() * 1_000_000))
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    write_source(config.source.url, tables)
    write_s = time.perf_counter() - started
    source = {name: len(next(iter(columns.values()))) for name, columns in tables.items()}
    del tables
    print(
        f"source database: {', '.join(f'{n:,} {t}' for t, n in source.items())} "
        f"(generated in {generate_s:.1f} s, written in {write_s:.1f} s)",
        flush=True,
    )

    error = None
    started = time.perf_counter()
    try:
        run_pipeline(config, night, ["nightly"])  # what `marketing run --date D --stage nightly` runs
    except Exception as exc:  # reported below with what the warehouse recorded
        error = f"{type(exc).__name__}: {exc}"
    nightly_s = time.perf_counter() - started

    counted = read_back(config, night)
    datasets = {
        dataset: {
            "source": source[dataset],
            "clean_rows_out": counted["clean"].get(dataset),
            "table": table,
            "published": counted["published"].get(table),
            "rows_published": counted["freshness"].get(table),
        }
        for dataset, table in PUBLISHED.items()
    }
    problems, notes = check(datasets, counted["stages"], error)

    stage_s = {s: counted["stages"][s]["seconds"] for s in STAGES if s in counted["stages"]}
    results = {
        "night": night.isoformat(),
        "order_lines": order_lines,
        "source_rows": source,
        "datasets": datasets,
        "stages": {s: counted["stages"][s] for s in STAGES if s in counted["stages"]},
        "stage_s": stage_s,
        "generate_s": round(generate_s, 1),
        "write_source_s": round(write_s, 1),
        "nightly_wall_s": round(nightly_s, 1),
        "error": error,
        "problems": problems,
        "notes": notes,
        "data": {
            "cpus": os.cpu_count(),
            "spark_master": config.spark.master,
            "duckdb": duckdb.__version__,
            "workdir": str(root),
        },
    }
    print_tables(results)
    return results


def check(datasets: dict[str, dict], stages: dict[str, dict], error: str | None) -> tuple[list[str], list[str]]:
    """``(problems, notes)``: a failed night, or fct_order_items not holding exactly the clean
    and the source order lines, is a problem (exit 1); another table whose counts differ is
    only noted."""
    if error is not None:
        failed = [stage for stage, run in stages.items() if run["status"] == "failed"]
        return [f"the nightly run failed{f' in stage {failed[0]}' if failed else ''}: {error}"], []
    lines = datasets["order_items"]
    differs = [
        f"{what} ({_count(lines[key])})"
        for what, key in (("clean rows_out of order_items", "clean_rows_out"), ("source order_items rows", "source"))
        if lines["published"] != lines[key]
    ]
    problems = (
        [f"fct_order_items holds {_count(lines['published'])} rows != {' and != '.join(differs)}"] if differs else []
    )
    notes = [
        f"{d['table']}: {d['published']} rows, rows_published {d['rows_published']}, "
        f"clean {d['clean_rows_out']}, source {d['source']}"
        for d in datasets.values()
        if not d["source"] == d["clean_rows_out"] == d["published"] == d["rows_published"]
    ]
    return problems, notes


def generate_shop(order_lines: int, end_us: int) -> dict[str, dict[str, list]]:
    """Valid source rows, column by column: about one order per 5 lines, one customer per 30
    lines, one product per 150. Every row changed in the year before ``end_us`` (the end of the
    night, UTC microseconds), the newest orders in its last hours. Timestamps are naive UTC
    text, as SQLAlchemy stores ``DateTime`` in SQLite."""
    from jobs.platform.interface import CHANNELS, SUPPRESSION_CHANNELS, SUPPRESSION_REASONS
    from jobs.simulator.people import REGIONS
    from jobs.simulator.spec import BRANDS, CATALOG

    rng = np.random.default_rng(SEED)
    year_start = end_us - 365 * US_PER_DAY
    n_users, n_products = max(1, order_lines // 30), max(1, order_lines // 150)

    # products: the simulator's categories, brands and price levels
    l1_names = list(CATALOG)
    shares = np.array([CATALOG[c][3] for c in l1_names])
    l1 = rng.choice(len(l1_names), size=n_products, p=shares / shares.sum())
    l2 = [
        CATALOG[l1_names[c]][0][k % len(CATALOG[l1_names[c]][0])]
        for c, k in zip(l1, rng.integers(0, 60, n_products), strict=True)
    ]
    medians = np.array([CATALOG[c][1] for c in l1_names])[l1]
    sigmas = np.array([CATALOG[c][2] for c in l1_names])[l1]
    # at most 3,000 a unit: 9 lines of 3 units stay below clean.max_order_amount (100,000)
    price = np.round(np.clip(medians * np.exp(rng.normal(0, sigmas)), 1, 3_000), 2)
    brand = rng.choice(np.array(BRANDS, dtype=object), n_products)
    product_ids = np.arange(1, n_products + 1)
    products = {
        "product_id": product_ids.tolist(),
        "name": [f"{b} {s} {p}" for b, s, p in zip(brand, l2, product_ids, strict=True)],
        "category_l1": [l1_names[c] for c in l1],
        "category_l2": l2,
        "brand": brand.tolist(),
        "price": price.tolist(),
        "is_active": (rng.random(n_products) < 0.95).tolist(),
        "updated_at": _text(rng.integers(year_start, end_us, n_products)),
    }

    # users: signed up within the year; a third changed their profile since
    user_ids = np.arange(1, n_users + 1)
    signup = rng.integers(year_start, end_us - US_PER_DAY, n_users)
    changed = rng.random(n_users) < 0.33
    user_updated = np.where(changed, signup + (rng.random(n_users) * (end_us - signup)).astype(np.int64), signup)
    regions = list(REGIONS)
    weights = np.array([REGIONS[r][1] for r in regions])
    region = rng.choice(len(regions), n_users, p=weights / weights.sum())
    has_email, has_phone = rng.random(n_users) < 0.9, rng.random(n_users) < 0.7
    users = {
        "user_id": user_ids.tolist(),
        "signup_at": _text(signup),
        "gender": rng.choice(np.array(["F", "M", "U"], dtype=object), n_users, p=[0.55, 0.4, 0.05]).tolist(),
        "birth_year": rng.integers(1955, 2007, n_users).tolist(),
        "region": [regions[r] for r in region],
        "city": [
            REGIONS[regions[r]][0][k % len(REGIONS[regions[r]][0])] for r, k in zip(region, user_ids, strict=True)
        ],
        "email": [f"customer{u}@example.com" if e else None for u, e in zip(user_ids, has_email, strict=True)],
        "phone": [f"+86 139 {u:08d}" if p else None for u, p in zip(user_ids, has_phone, strict=True)],
        "consent_email": (rng.random(n_users) < 0.6).tolist(),
        "consent_sms": (rng.random(n_users) < 0.4).tolist(),
        "consent_push": (rng.random(n_users) < 0.5).tolist(),
        "updated_at": _text(user_updated),
    }

    # orders: 1 to 9 lines (5 on average), cut so the lines add up to exactly order_lines
    sizes = rng.integers(1, 10, order_lines // 5 + 100)
    while sizes.sum() < order_lines:
        sizes = np.concatenate([sizes, rng.integers(1, 10, 1000)])
    ends = np.cumsum(sizes)
    n_orders = int(np.searchsorted(ends, order_lines)) + 1
    sizes = sizes[:n_orders]
    sizes[-1] -= int(ends[n_orders - 1] - order_lines)
    order_ids = np.arange(1, n_orders + 1)
    # a few customers buy much more often than most
    buyer = rng.choice(n_users, n_orders, p=_popularity(rng, n_users))
    created = signup[buyer] + (rng.random(n_orders) * (end_us - signup[buyer])).astype(np.int64)
    status = rng.choice(
        np.array(["created", "paid", "shipped", "completed", "cancelled", "refunded"], dtype=object),
        n_orders,
        p=[0.03, 0.05, 0.08, 0.74, 0.06, 0.04],
    )
    # the latest status change: up to 10 days after the order, never after the night
    changed_at = np.minimum(created + (rng.random(n_orders) * 10 * US_PER_DAY).astype(np.int64), end_us - 1)
    order_updated = np.where(status == "created", created, changed_at)
    paid = np.isin(status, ["paid", "shipped", "completed", "refunded"])
    paid_at = np.minimum(created + rng.integers(10_000_000, 1_800_000_000, n_orders), order_updated)

    # order lines: products by popularity, mostly one unit at the product's price
    line_order = np.repeat(np.arange(n_orders), sizes)
    line_no = np.arange(order_lines) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    product = rng.choice(n_products, order_lines, p=_popularity(rng, n_products))
    quantity = rng.choice(np.array([1, 2, 3]), order_lines, p=[0.8, 0.15, 0.05])
    unit_price = price[product]
    subtotal = np.bincount(line_order, weights=quantity * unit_price, minlength=n_orders)
    coupon = rng.random(n_orders) < 0.2
    discount = np.where(coupon, np.round(subtotal * 0.1, 2), 0.0)
    items = {
        "order_id": order_ids[line_order].tolist(),
        "line_no": line_no.tolist(),
        "product_id": product_ids[product].tolist(),
        "quantity": quantity.tolist(),
        "unit_price": unit_price.tolist(),
        "updated_at": _text(created[line_order]),  # as the simulator: lines never change
    }
    orders = {
        "order_id": order_ids.tolist(),
        "user_id": user_ids[buyer].tolist(),
        "status": status.tolist(),
        "created_at": _text(created),
        "paid_at": [t if p else None for t, p in zip(_text(paid_at), paid, strict=True)],
        "total_amount": np.round(subtotal - discount, 2).tolist(),
        "discount_amount": discount.tolist(),
        "coupon_code": np.where(coupon, "SPRING10", None).tolist(),
        "channel": rng.choice(np.array(CHANNELS, dtype=object), n_orders, p=[0.35, 0.45, 0.2]).tolist(),
        "updated_at": _text(order_updated),
    }

    # suppressions: 1% of the customers, one channel each
    n_suppressed = max(1, n_users // 100)
    who = rng.choice(n_users, n_suppressed, replace=False)
    suppressed_at = signup[who] + (rng.random(n_suppressed) * (end_us - signup[who])).astype(np.int64)
    suppressions = {
        "user_id": user_ids[who].tolist(),
        "channel": rng.choice(np.array(SUPPRESSION_CHANNELS, dtype=object), n_suppressed).tolist(),
        "reason": rng.choice(np.array(SUPPRESSION_REASONS, dtype=object), n_suppressed).tolist(),
        "suppressed_at": _text(suppressed_at),
        "updated_at": _text(suppressed_at),
    }
    return {"users": users, "products": products, "orders": orders, "order_items": items, "suppressions": suppressions}


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _popularity(rng: np.random.Generator, n: int) -> np.ndarray:
    weights = rng.lognormal(0, 1.2, n)
    return weights / weights.sum()


def _text(us: np.ndarray) -> list[str]:
    """UTC microseconds as SQLAlchemy writes a ``DateTime`` to SQLite: ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    text = np.datetime_as_string(np.asarray(us, dtype=np.int64).astype("datetime64[us]"), unit="us")
    return np.char.replace(text, "T", " ").tolist()


def write_source(url: str, tables: dict[str, dict[str, list]], chunk_rows: int = 100_000) -> None:
    """Create the simulator's source tables and insert the rows in chunks (one transaction)."""
    import sqlalchemy as sa

    from jobs.simulator.source_db import SOURCE_TABLES

    engine = sa.create_engine(url)
    try:
        next(iter(SOURCE_TABLES.values()))[0].metadata.create_all(engine)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for name, columns in tables.items():
                table = SOURCE_TABLES[name][0]
                assert list(columns) == [c.name for c in table.columns], name
                sql = f"insert into {name} ({', '.join(columns)}) values ({', '.join('?' * len(columns))})"
                rows = list(zip(*columns.values(), strict=True))
                for start in range(0, len(rows), chunk_rows):
                    cursor.executemany(sql, rows[start : start + chunk_rows])
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


def read_back(config, night: date) -> dict:
    """What the warehouse recorded for the night: clean ``rows_out`` per dataset, rows of the
    published tables, ``rows_published`` per table, and each stage's run."""
    import sqlalchemy as sa

    schema = config.warehouse.schema_name
    engine = sa.create_engine(config.warehouse.url, poolclass=sa.pool.NullPool)
    found: dict[str, dict] = {"clean": {}, "published": {}, "freshness": {}, "stages": {}}
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names(schema=schema))
            if "ops_pipeline_runs" in tables:
                found["clean"] = dict(
                    conn.execute(
                        sa.text(
                            f"select dataset, rows_out from {schema}.ops_pipeline_runs "
                            "where stage = 'clean' and logical_date = :d"
                        ),
                        {"d": night},
                    ).all()
                )
            for table in PUBLISHED.values():
                if table in tables:
                    found["published"][table] = conn.execute(sa.text(f"select count(*) from {schema}.{table}")).scalar()
            if "ops_table_freshness" in tables:
                found["freshness"] = dict(
                    conn.execute(sa.text(f"select table_name, rows_published from {schema}.ops_table_freshness")).all()
                )
            if "ops_stage_runs" in tables:
                runs = conn.execute(
                    sa.text(
                        f"select stage, status, started_at, finished_at, peak_rss_mb, error "
                        f"from {schema}.ops_stage_runs where logical_date = :d order by started_at"
                    ),
                    {"d": night},
                ).all()
                found["stages"] = {
                    stage: {
                        "status": status,
                        "seconds": round((finished - started).total_seconds(), 1),
                        "peak_rss_mb": round(peak) if peak else None,
                        "error": error,
                    }
                    for stage, status, started, finished, peak, error in runs
                }
    finally:
        engine.dispose()
    return found


def print_tables(results: dict) -> None:
    header = ("dataset", "source rows", "clean rows_out", "warehouse table", "table rows", "rows_published")
    rows = [
        (
            name,
            _count(d["source"]),
            _count(d["clean_rows_out"]),
            d["table"],
            _count(d["published"]),
            _count(d["rows_published"]),
        )
        for name, d in results["datasets"].items()
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print(
            "  ".join(
                str(v).ljust(w) if i in (0, 3) else str(v).rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print()
    width = max([len("stage"), *(len(s) for s in results["stages"])])
    print(f"{'stage':<{width}}  {'status':<8}  {'wall s':>7}  {'peak MB':>7}")
    for stage, run in results["stages"].items():
        print(f"{stage:<{width}}  {run['status']:<8}  {run['seconds']:7.1f}  {_count(run['peak_rss_mb']):>7}")
    print(f"{'nightly':<{width}}  {'':<8}  {results['nightly_wall_s']:7.1f}")
    for note in results["notes"]:
        print(f"note: {note}")
    print()


if __name__ == "__main__":
    sys.exit(main())
