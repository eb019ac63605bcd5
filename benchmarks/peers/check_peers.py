"""Check (benchmark support, not a test): the DuckDB peers give what the Spark stages give, on
the same simulated nights, and how long each takes.

    .venv/bin/python benchmarks/peers/check_peers.py [--users 300] [--days 20] [--nights 1]
        [--threads N] [--no-edge] [--keep] [--out FILE]

Simulates a shop (``jobs.simulator``, default dirt: malformed lines, duplicates, late events,
unknown products, bots) and runs the Spark stages of each night as ``marketing run`` does
(``run_stage``: collect_events, collect_sources, clean_sources, clean_events, validate, load,
segments); the first night sweeps the history (collect lookback and late window = days + 2, as
``bench_pipeline.py``). After each night:

- ``duckdb_clean.clean_events_duckdb`` on the same raw files (the night's manifest) and the same
  product keys and earlier clean events; compared with Spark's run record
  (``_runs/clean/events/D.json``: counts, quarantine reasons, bots, late events), its clean rows
  (every column; the event_id sets are reported too) and its quarantine rows;
- ``duckdb_rfm.rfm_duckdb`` on the same lake Parquet; compared with ``mart_user_rfm`` of the date
  in the warehouse (every column but ``loaded_at``), and with Spark's ``score_rfm`` when both
  score with the fixed thresholds (the method for populations under
  ``min_population_for_quantiles``) and with a 7-day lookback (customers without a purchase in
  it: unscored, ``Lost``).

Then (unless ``--no-edge``) the same comparison of the cleaning on hand-made lines (every kind
of dirt and the corners of Spark's JSON, number and timestamp parsing), in a lake of their own:
one file must match exactly; a second one holds the lines where the peer deliberately differs
(see ``duckdb_clean``), whose differences are listed, not counted as failures.

Prints the differences and the seconds of each side (Spark: the stage as ``run_stage`` runs
it, and the RFM computation alone; DuckDB: the peer call); exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.peers.duckdb_clean import clean_events_duckdb, known_products_duckdb  # noqa: E402
from benchmarks.peers.duckdb_rfm import RFM_COLUMNS, rfm_duckdb  # noqa: E402

SPARK_STAGES = ("collect_events", "collect_sources", "clean_sources", "clean_events", "validate", "load", "segments")
SHOWN = 10  # differences printed per comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--nights", type=int, default=1, help="nights checked, the first sweeping the history")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores, as Spark's local[*])")
    parser.add_argument("--no-edge", action="store_true", help="skip the hand-made edge lines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("MKT_PII_HASH_KEY", "benchmark-only-key-0123456789abcdef")
    root = Path(tempfile.mkdtemp(prefix="mkt-check-peers-"))
    print(f"working folder: {root}", flush=True)
    results: dict = {"data": {"users": args.users, "days": args.days, "cpus": os.cpu_count()}, "nights": {}}
    failures: list[str] = []
    try:
        for night, result in check_nights(root, args.users, args.days, args.nights, args.threads):
            results["nights"][night.isoformat()] = result
            failures += [f"{night}: {problem}" for problem in result["problems"]]
        if not args.no_edge:
            results["edge"] = check_edge_lines(root / "edge", args.threads)
            failures += [f"edge lines: {problem}" for problem in results["edge"]["problems"]]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_timings(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    if failures:
        print(f"\nMISMATCH ({len(failures)}):\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("\nOK: both peers match the Spark stages exactly")


def _overrides(root: Path, days: int) -> dict:
    storage = ("landing_root", "lake_root", "reports_root", "exports_root", "state_root")
    return {
        "storage": {name: str(root / name) for name in storage},
        "source": {"url": f"sqlite:///{root / 'source.db'}"},
        "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
        "recommender": {"registry_root": str(root / "models")},
        "retention": {"raw_days": days + 20},
        "validation": {"build_data_docs": False},
    }


def check_nights(root: Path, users: int, days: int, nights: int, threads: int | None):
    """Simulate, then per night: the Spark stages, both peers, the comparisons."""
    from jobs.customers.segments_config import load_segments
    from jobs.platform.config import load_config
    from jobs.platform.lake import landing_storage
    from jobs.simulator import SimulationSpec, generate, materialize

    overrides = _overrides(root, days)
    config = load_config(environ={}, overrides=overrides)
    sweep = load_config(
        environ={},
        overrides={**overrides, "collect": {"lookback_days": days + 2}, "clean": {"late_window_days": days + 2}},
    )
    spec = SimulationSpec(users=users, days=days, timezone=config.shop.timezone)
    world = generate(spec)
    last = spec.start_date + timedelta(days=days - 1)
    segments = load_segments(config.customers.segments_file)
    for night in [last - timedelta(days=k) for k in range(nights - 1, -1, -1)]:
        night_config = sweep if night == last - timedelta(days=nights - 1) else config
        materialize(world, landing_storage(config), config.source.url, night, root / "truth")
        print(f"\nnight {night}: Spark stages", flush=True)
        spark_s = run_spark_stages(night_config, night)
        result: dict = {"spark_s": spark_s, "problems": []}
        result["clean_events"] = compare_clean(night_config, night, root / "duckdb", threads, result["problems"])
        result["rfm"] = compare_rfm(night_config, night, segments, threads, result["problems"])
        yield night, result


def run_spark_stages(config, night: date, stages=SPARK_STAGES) -> dict:
    from jobs.platform.stages import run_stage

    seconds = {}
    for stage in stages:
        started = time.perf_counter()
        run_stage(config, stage, night)
        seconds[stage] = round(time.perf_counter() - started, 2)
        print(f"  {stage:<16} {seconds[stage]:7.2f} s", flush=True)
    return seconds


def _lake_root(config) -> Path:
    return Path(config.storage.lake_root)


def compare_clean(
    config, night: date, out_dir: Path, threads: int | None, problems: list[str], where: str = "", counts_too=True
) -> dict:
    """Run the cleaning peer on the night's raw files; compare with Spark's outputs (the rows
    ``where`` selects; the counts unless not ``counts_too``)."""
    from jobs.platform.lake import clean_events_prefix, raw_events_prefix, run_record_key

    lake = _lake_root(config)
    manifest = json.loads((lake / raw_events_prefix(night) / "_manifest.json").read_text())
    raw_paths = [str(lake / entry["raw_key"]) for entry in manifest["files"]]
    seen = lake / clean_events_prefix()
    started = time.perf_counter()
    known = known_products_duckdb(str(lake), night)
    counts = clean_events_duckdb(
        raw_paths,
        night,
        tz=config.shop.timezone,
        late_window_days=config.clean.late_window_days,
        future_tolerance_minutes=config.clean.future_tolerance_minutes,
        max_line_bytes=config.clean.max_line_bytes,
        bot_max_events_per_minute=config.clean.bot_max_events_per_minute,
        known_products=known,
        seen_event_ids_parquet=str(seen) if any(seen.rglob("*.parquet")) else None,
        out_dir=str(out_dir),
        threads=threads,
    )
    duckdb_s = round(time.perf_counter() - started, 2)
    record = json.loads((lake / run_record_key("clean", "events", night)).read_text())
    duplicate_file_lines = int(record.get("duplicate_file_lines", 0))
    spark_counts = {
        "input": record["counts"]["input"],
        "clean": record["counts"]["clean"],
        "duplicates": record["counts"]["duplicates"],
        "quarantined": record["counts"]["quarantined"],
        "by_reason": record["quarantined_by_reason"],
        "bot": record["bot_events"],
        "late": record["late_events"],
    }
    # Lines of files collect set aside as duplicate files are counted by Spark, not read by either.
    peer_counts = {
        **counts,
        "input": counts["input"] + duplicate_file_lines,
        "duplicates": counts["duplicates"] + duplicate_file_lines,
    }
    print(f"  clean_events peer {duckdb_s:7.2f} s   lines {spark_counts['input']:,}", flush=True)
    for key in spark_counts if counts_too else ():
        if spark_counts[key] != peer_counts[key]:
            problems.append(f"clean_events {key}: spark {spark_counts[key]} duckdb {peer_counts[key]}")
    rows = compare_clean_rows(lake, out_dir, night, problems, where)
    print(f"  counts spark {json.dumps(spark_counts)}\n         duckdb {json.dumps(peer_counts)}")
    return {"duckdb_s": duckdb_s, "spark_counts": spark_counts, "duckdb_counts": peer_counts, **rows}


CLEAN_ROW = """event_id, event_type, epoch_us(CAST(event_at AS TIMESTAMPTZ)) AS event_at_us,
    CAST(event_date AS DATE) AS event_date, user_id, anonymous_id, session_id, product_id, search_query, channel,
    device, utm_source, price, is_bot, CAST(list_sort(map_entries(extra_fields)) AS VARCHAR) AS extra_fields,
    source_file, line_number"""
QUARANTINE_ROW = "payload, source_file, line_number, stage, reason, detail"


def _diff(con: duckdb.DuckDBPyConnection, what: str, spark: str, peer: str, problems: list[str], where="") -> int:
    """Rows of one side missing from the other (as multisets); prints a few, returns how many."""
    total = 0
    for side, a, b in (("only in spark", spark, peer), ("only in duckdb", peer, spark)):
        query = f"SELECT * FROM ({a} EXCEPT ALL {b}) {where}"
        count = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
        if count:
            total += count
            problems.append(f"{what}: {count} rows {side}")
            print(f"  {what}: {count} rows {side}, e.g.")
            for row in con.execute(f"{query} ORDER BY ALL LIMIT {SHOWN}").fetchall():
                print("    " + repr(row)[:400])
    return total


def compare_clean_rows(lake: Path, out_dir: Path, night: date, problems: list[str], where: str = "") -> dict:
    from jobs.platform.lake import clean_events_prefix, quarantine_prefix

    def clean(root: Path) -> str:
        glob = root / clean_events_prefix(night) / "**" / "*.parquet"
        return f"SELECT {CLEAN_ROW} FROM read_parquet('{glob}', hive_partitioning = true)"

    def quarantine(root: Path) -> str:
        glob = root / quarantine_prefix("events", night) / "*.parquet"
        return f"SELECT {QUARANTINE_ROW} FROM read_parquet('{glob}')"

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        spark_ids = {r[0] for r in con.execute(f"SELECT event_id FROM ({clean(lake)}) {where}").fetchall()}
        peer_ids = {r[0] for r in con.execute(f"SELECT event_id FROM ({clean(out_dir)}) {where}").fetchall()}
        print(
            f"  clean event_ids: spark {len(spark_ids):,}, duckdb {len(peer_ids):,}, only in spark "
            f"{len(spark_ids - peer_ids)}, only in duckdb {len(peer_ids - spark_ids)}"
        )
        if spark_ids != peer_ids:
            problems.append(
                f"clean event_ids differ: only in spark {sorted(spark_ids - peer_ids)[:SHOWN]}, "
                f"only in duckdb {sorted(peer_ids - spark_ids)[:SHOWN]}"
            )
        row_diffs = _diff(con, "clean rows", clean(lake), clean(out_dir), problems, where)
        quarantine_diffs = _diff(con, "quarantine rows", quarantine(lake), quarantine(out_dir), problems, where)
        quarantined = con.execute(f"SELECT count(*) FROM ({quarantine(lake)}) {where}").fetchone()[0]
    print(
        f"  clean rows (all columns): {'equal' if not row_diffs else f'{row_diffs} differ'}; "
        f"quarantine rows (payload, reason, detail): {'equal' if not quarantine_diffs else f'{quarantine_diffs} differ'}"
        f" ({quarantined:,})"
    )
    return {"clean_ids": len(spark_ids), "row_diffs": row_diffs, "quarantine_diffs": quarantine_diffs}


def compare_rfm(config, night: date, segments, threads: int | None, problems: list[str]) -> dict:
    """Spark's RFM alone (timed) and the peer (timed), both against ``mart_user_rfm`` of the date;
    then both again with the fixed thresholds (the method of small populations) and a short
    lookback (inactive customers)."""
    import sqlalchemy as sa

    from jobs.customers.segments import published_customers, rfm_metrics, score_rfm
    from jobs.platform.interface import PURCHASE_STATUSES
    from jobs.platform.ops import warehouse_engine
    from jobs.platform.published import published_batches
    from jobs.platform.warehouse import to_arrow

    def spark_rfm(rfm) -> pd.DataFrame:
        _, bought = published_customers(config, night, PURCHASE_STATUSES)
        frame = to_arrow(score_rfm(rfm_metrics(bought, night, rfm.lookback_days), rfm)).to_pandas()
        return frame.assign(snapshot_date=night)[list(RFM_COLUMNS)]

    started = time.perf_counter()
    spark = spark_rfm(segments.rfm)
    spark_s = round(time.perf_counter() - started, 2)
    engine = warehouse_engine(config)
    schema = config.warehouse.schema_name
    with engine.connect() as conn:
        batches = published_batches(conn, schema)
        mart = pd.read_sql(
            sa.text(f"select * from {schema}.mart_user_rfm where snapshot_date = :d"), conn, params={"d": night}
        )
    engine.dispose()
    lake = str(_lake_root(config))
    started = time.perf_counter()
    peer = rfm_duckdb(lake, night, batches, segments, threads=threads)
    duckdb_s = round(time.perf_counter() - started, 2)
    print(f"  rfm spark (alone) {spark_s:6.2f} s   peer {duckdb_s:6.2f} s   customers {len(mart):,}", flush=True)

    differences = {
        "spark frame vs mart_user_rfm": _frame_differences(mart[list(RFM_COLUMNS)], spark),
        "duckdb vs mart_user_rfm": _frame_differences(mart[list(RFM_COLUMNS)], peer),
    }
    variants = {
        "fixed thresholds": segments.rfm.model_copy(
            update={"scoring": segments.rfm.scoring.model_copy(update={"method": "fixed"})}
        ),
        "7-day lookback (inactive customers)": segments.rfm.model_copy(update={"lookback_days": 7}),
    }
    for name, rfm in variants.items():
        differences[f"duckdb vs spark, {name}"] = _frame_differences(
            spark_rfm(rfm), rfm_duckdb(lake, night, batches, rfm, threads=threads)
        )
    for what, lines in differences.items():
        print(f"  rfm {what}: {'equal' if not lines else f'{len(lines)} differ'} ({len(mart):,})")
        if lines:
            problems.append(f"rfm {what}: {len(lines)} differences")
            for line in lines[:SHOWN]:
                print("    " + line)
    return {
        "spark_s": spark_s,
        "duckdb_s": duckdb_s,
        "customers": len(mart),
        "differences": {what: len(lines) for what, lines in differences.items()},
    }


def _frame_differences(spark: pd.DataFrame, peer: pd.DataFrame) -> list[str]:
    """Cell by cell, per user_id: missing users and differing values (null equals null)."""
    spark = spark.sort_values("user_id").reset_index(drop=True)
    peer = peer.sort_values("user_id").reset_index(drop=True)
    if list(spark["user_id"]) != list(peer["user_id"]):
        only_spark = set(spark["user_id"]) - set(peer["user_id"])
        only_peer = set(peer["user_id"]) - set(spark["user_id"])
        return [f"users only in spark {sorted(only_spark)[:SHOWN]}, only in duckdb {sorted(only_peer)[:SHOWN]}"]
    lines = []
    for column in spark.columns:
        for index, (x, y) in enumerate(zip(spark[column].astype(object), peer[column].astype(object), strict=True)):
            x, y = _plain(x), _plain(y)
            if x != y:
                lines.append(f"user {spark['user_id'][index]} {column}: spark {x!r} duckdb {y!r}")
    return lines


def _plain(value):
    """A cell as a comparable Python value: null for every kind of missing, dates as dates."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.date()
    return value


# ----------------------------------------------------------------------------------------------
# Hand-made edge lines
# ----------------------------------------------------------------------------------------------


def edge_lines(day: date, tz: str) -> tuple[list[bytes], list[bytes]]:
    """``(must match, known differences)``: lines for batch ``day``, around local noon of ``day``."""
    noon = datetime.combine(day, datetime.min.time().replace(hour=12), ZoneInfo(tz))
    utc = noon.astimezone(UTC).replace(tzinfo=None)
    local = noon.replace(tzinfo=None)
    offset = noon.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"

    def event(event_id: str, session: str = "s1", **fields) -> dict:
        base = {
            "event_id": event_id,
            "event_type": "product_view",
            "event_ts": f"{local:%Y-%m-%dT%H:%M:%S}{offset}",
            "user_id": 7,
            "anonymous_id": "a1",
            "session_id": session,
            "product_id": 10,
            "query": None,
            "channel": "web",
            "device": "desktop",
            "utm_source": None,
            "price": 19.9,
        }
        base.update(fields)
        return {k: v for k, v in base.items() if v is not ...}

    def text(obj: dict) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    def raw(event_id: str, **values: str) -> bytes:
        """A line whose fields named in ``values`` hold raw JSON text."""
        line = text(event(event_id, **{k: f"@@{k}@@" for k in values}))
        for k, v in values.items():
            line = line.replace(f'"@@{k}@@"'.encode(), v.encode())
        return line

    def with_extra(event_id: str, extra: str, session: str = "s1") -> bytes:
        return text(event(event_id, session=session))[:-1] + b"," + extra.encode() + b"}"

    lines: list[bytes] = [text(event("ok"))]
    u, d = utc, utc.date()
    timestamps = [
        f"{u:%Y-%m-%dT%H:%M:%S}Z", f"{u:%Y-%m-%d %H:%M:%S}", f"{u:%Y-%m-%dT%H:%M}", f"{u:%Y-%m-%dT%H}",
        f"{d:%Y-%m-%d}", f"{local:%Y-%m-%dT%H:%M:%S}.123456789{offset}", f"{u:%Y-%m-%dT%H:%M:%S}+0:00",
        f"{u:%Y-%m-%dT%H:%M:%S}+0000", f"{u:%Y-%m-%dT%H:%M:%S}+00", f"{local:%Y-%m-%dT%H:%M:%S} {tz}",
        f"{local:%Y-%m-%dT%H:%M:%S}{tz}", f"{u:%Y-%m-%dT%H:%M:%S}UTC+0", f"{u:%Y-%m-%dT%H:%M:%S}GMT",
        f"{u:%Y-%m-%dT%H:%M:%S}UT", f"{u:%Y-%m-%dT%H:%M:%S}utc", f"{u:%Y-%m-%dT%H:%M:%S}CTT",
        f"{u:%Y-%m-%dT%H:%M:%S}EST", f"{u:%Y-%m-%dT%H:%M:%S}America/New_York", f"{u:%Y-%m-%dT%H:%M:%S}Zulu",
        f"{u.year}-{u.month}-{u.day}T{u.hour}:{u.minute}:{u.second}Z", f" {u:%Y-%m-%dT%H:%M:%S}Z ",
        f"\t{u:%Y-%m-%dT%H:%M:%S}Z", f"+{u:%Y-%m-%dT%H:%M:%S}Z", f"{u:%Y-%m-%dT%H:%M:%S}.Z",
        f"{u:%Y-%m-%dT%H:%M:%S}z", f"{u:%Y-%m-%dT%H:%M:%S}+00:0", f"{u:%Y-%m-%dT%H:%M:%S}+00:00:30",
        f"{u:%Y-%m-%dT%H:%M:%S}-0530", f"{u:%Y-%m-%dT%H:%M:%S} +05:00", f"{u:%Y-%m-%dT%H:%M:%S}.5",
        f"{u:%Y-%m-%dT%H:%M:%S}.+01:00", f"{u:%Y-%m-%dT%H:%M:%S}+19:00", f"{u:%Y-%m-%dT%H:%M:%S}+18:00",
        f"{u:%Y-%m-%d}T24:00:00Z", f"{u:%Y-%m-%dT%H:%M}:60Z", f"{u.year}-02-30T00:00:00Z", f"{u:%Y-%m-%d}\t00:00:00Z",
        f"{u:%Y-%m-%dT%H:%M:%S}Mars/Olympus", "yesterday", "not-a-timestamp", "1970-01-01T08:00:00+08:00",
        "2099-12-31T23:59:59+08:00", "2026-13-45T25:61:00+08:00", str(int(noon.timestamp())),
        f"{(noon + timedelta(minutes=59)):%Y-%m-%dT%H:%M:%S%z}",
        f"{(datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(tz)) + timedelta(minutes=61)).isoformat()}",
        f"{(noon - timedelta(days=2)).isoformat()}", f"{(noon - timedelta(days=4)).isoformat()}",
        f"{(noon - timedelta(days=364)).isoformat()}", f"{(noon - timedelta(days=366)).isoformat()}",
    ]  # fmt: skip
    lines += [text(event(f"ts{i}", session=f"ts{i}", event_ts=ts)) for i, ts in enumerate(timestamps)]
    lines.append(raw("ts-num", event_ts=str(int(noon.timestamp()))))
    numbers = {
        "user_id": ["12.7", "1e2", '" 12 "', '"12."', '".5"', '"+5"', '"-"', '"."', "99999999999999999999",
                    "9223372036854775807", '"9223372036854775808"', '"-9223372036854775808"', '"\\t12"', "true",
                    "{}", "[1]", '"12.x"', '"1_000"', '"\uff10\uff11"', "-0", "1.0E7", "12345678.0", "1E-2", "100.0"],
        "price": ["12.50", "1e2", '"12.345"', '"12.355"', '"-12.345"', '"1e2"', '".5"', '"5."', '"10000000000"',
                  '"9999999999.995"', '"9999999999.994"', '"NaN"', "NaN", '"Infinity"', "Infinity", "-Infinity",
                  '" 3.5 "', '"\\t3.5"', '"+3.5"', '"0x10"', '"1,5"', "1E-2", '"1.e2"', '"1e-400"', "1e400"],
        "product_id": ['"11"', '"10.9"', '"999999"', "null", '" 10"', "10.0"],
    }  # fmt: skip
    for name, values in numbers.items():
        lines += [raw(f"{name}-{i}", **{name: v}) for i, v in enumerate(values)]
    lines += [
        raw("r1", event_type='" Product_View "', channel='"WEB"'),
        raw("r2", channel='"\\tweb"'),
        raw("r3", session_id='"  "'),
        raw("r4", session_id='"\\t"'),
        raw("r5", anonymous_id="0"),
        raw("r6", event_type="1"),
        raw("r7", device='"  "', utm_source='" Google "', query='"  "'),
        raw("r8", device='"\u00c9CRAN"'),
        raw("r9", session_id='{"a": [1, 2]}'),
        raw("r10", event_type="null"),
        text(event("r11", event_type="search", product_id=None, query="caf\ufffd \U0001f600")),
        text({k: v for k, v in event("r12").items() if k != "channel"}),
        text(event("r13", channel="pos")),
        text(event("r14", event_type="click")),
        text(event("r15", device=None, utm_source=None, query=None, price=None, user_id=None, product_id=None)),
        b'{"event_id":"k1","event_id":"k1b","event_type":"page_view","event_ts":"'
        + timestamps[0].encode()
        + b'","anonymous_id":"a","session_id":"k","channel":"web"}',
        b'{"event_id":"k2","event_type":"page_view","event_ts":"'
        + timestamps[0].encode()
        + b'","anonymous_id":"a","session_id":"k","channel":"web","user_id":null,"user_id":5}',
        with_extra(
            "x1",
            '"n":12.50,"o":{"a": 1, "b" : [1,"x"]},"b":true,"z":null,"big":123456789012345678901234,'
            '"f":1.0E7,"g":1.5e-5,"h":-0.0,"i":100,"s":"q\\"x\\u00e9\\n","arr":[ ]',
        ),
        with_extra("x2", '"":"empty","a.b":"dot","q\\"k":"quote","/":"slash","~":"tilde","nested":{"event_id":"zz"}'),
        with_extra("x3", '"nn":-Infinity,"nan":NaN,"inf":Infinity,"ninf":-INF'),
        text(event("j1"))[:-1] + b",}",
        text(event("j2")) + b" junk",
        text(event("j3")) + b"}",
        text(event("j4"))[:-1] + b',"arr":[1,2,]}',
        text(event("j5"))[:-1] + b',"c":1 /* c */}',
        "\ufeff".encode() + text(event("j6")),
        text(event("j7")) + b"\r",
        text(event("j8")).replace(b',"channel"', b',\r"channel"'),
        text(event("j9")).replace(b'"desktop"', b'"desk\rtop"'),
        text(event("j10")).replace(b'"desktop"', b'"desk\ttop"'),
        text(event("j11")).replace(b'"desktop"', b'"de\\u0041"'),
        b"",
        b"   ",
        b"[1, 2]",
        b"42",
        b'"str"',
        b"null",
        b"{}",
        with_extra("j12", '"nn":nan'),
        with_extra("j13", '"nn":+1'),
        with_extra("j14", '"nn":.5'),
        with_extra("j15", '"nn":1.'),
        with_extra("j16", '"nn":INF'),
        with_extra("j17", '"nn":"\\x41"'),
        with_extra("j18", '"nn":-nan'),
        with_extra("j19", '"nn":inf'),
        with_extra("j20", '"info":"inflation, nan"'),
        with_extra("j21", '"t":"a,}"'),
        text(event("j22"))[:-1] + b',,"nn":1}',
        b" \t" + text(event("j23")) + b"  \t",
        text(event("j24"))[:-40],
        text(event("j25", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"caf\xe9"),
        text(event("j26", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xc0\x80"),
        text(event("j27", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xed\xa0\x80"),
        text(event("j28", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xf4\x90\x80\x80"),
        text(event("j29", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\x00"),
        text(event("j30", query="PLACEHOLDER")).replace(b"PLACEHOLDER", b"\xff" + "é".encode() * 3000),
        text(event("j31", blob="x" * 5000)),
        text(event("j32", blob="é" * 3000))[:-2] + b"\xff}",
        text(event("j33", blob="\u0000")),
        text(event("ok")),  # a duplicate of the first line
        text(event("u1", product_id=123456)),
    ]
    lines += [text(event(f"bot{i}", session="bot", event_ts=f"{u:%Y-%m-%dT%H:%M}:{i:02d}Z")) for i in range(31)]
    lines.append(text(event("bot-later", session="bot", event_ts=f"{u + timedelta(hours=2):%Y-%m-%dT%H:%M:%S}Z")))
    lines += [text(event(f"human{i}", session="human", event_ts=f"{u:%Y-%m-%dT%H:%M}:{i:02d}Z")) for i in range(30)]
    known_differences = [
        text(event("kd1", session="kd1")).replace(b'"', b"'"),  # single quotes: Jackson allows them
        text(event("kd2", session="kd2")).replace(b'"desktop"', b'"\\ud800"'),  # a lone surrogate
        b'{"event_id":"kd3","event_type":"page_view","event_ts":"'
        + timestamps[0].encode()
        + b'","anonymous_id":"a","session_id":"kd3","channel":"web","x":1,"x":"two"}',  # a repeated unknown key
        with_extra("kd4", '"o":{"f":1.0E7, "g": 2}', session="kd4"),  # numbers and spacing inside a nested value
        # a time only: Spark dates it today, so it differs only when the check runs on that day
        text(event("kd5", session="kd5", event_ts=f"{u:%H:%M:%S}")),
    ]
    return lines, known_differences


def check_edge_lines(root: Path, threads: int | None) -> dict:
    """Land the edge lines (a .jsonl.gz, a plain .jsonl copy of a few, the gz again under another
    name), run collect_events and clean_events, then the peer; compare."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.platform.config import load_config
    from jobs.platform.lake import landing_storage, raw_keys_prefix

    day = date(2026, 10, 10)
    config = load_config(environ={}, overrides={**_overrides(root, 5), "clean": {"max_line_bytes": 4096}})
    lines, known = edge_lines(day, config.shop.timezone)
    landing = landing_storage(config)
    folder = f"events/date={day.isoformat()}/hour=04/"
    gz = gzip.compress(b"\n".join(lines) + b"\n")
    landing.write_bytes(folder + "edge-1.jsonl.gz", gz)
    landing.write_bytes(folder + "edge-2.jsonl", b"\n".join(lines[:5] + [lines[-1]]))  # no final newline
    landing.write_bytes(folder + "edge-3.jsonl.gz", gz)  # a duplicate file: collect counts its lines
    # A space in the name: Spark's source_file is URI-encoded ("edge%204"), which sorts before
    # "edge-1", so these lines are kept and their copies in edge-1 are the duplicates.
    landing.write_bytes(folder + "edge 4.jsonl", b"\n".join(lines[5:10]) + b"\n")
    landing.write_bytes(folder + "known-differences.jsonl.gz", gzip.compress(b"\n".join(known) + b"\n"))
    keys = _lake_root(config) / raw_keys_prefix("products", day)
    keys.mkdir(parents=True)
    pq.write_table(pa.table({"product_id": pa.array([10, 11], pa.int64())}), keys / "part-0.parquet")
    print(f"\nedge lines ({len(lines)} + {len(known)} known differences): Spark stages", flush=True)
    spark_s = run_spark_stages(config, day, ("collect_events", "clean_events"))
    problems: list[str] = []
    # Counts are not compared: the known differences change them.
    result = compare_clean(
        config, day, root / "duckdb", threads, problems, "WHERE source_file NOT LIKE '%known-differences%'", False
    )
    print("  known differences (listed, not failures):")
    known_rows = compare_clean_rows(
        _lake_root(config), root / "duckdb", day, [], "WHERE source_file LIKE '%known-differences%'"
    )
    return {**result, "spark_s": spark_s, "known_differences": known_rows, "problems": problems}


def print_timings(results: dict) -> None:
    print("\nSeconds, Spark vs DuckDB (same input, same machine):")
    for night, result in results["nights"].items():
        clean, rfm = result["clean_events"], result["rfm"]
        spark_clean = result["spark_s"]["clean_events"]
        print(
            f"  {night}  clean_events  spark {spark_clean:7.2f}  duckdb {clean['duckdb_s']:6.2f}"
            f"  ({spark_clean / max(clean['duckdb_s'], 0.01):5.1f}x)  {clean['spark_counts']['input']:>9,} lines"
        )
        print(
            f"  {night}  rfm           spark {rfm['spark_s']:7.2f}  duckdb {rfm['duckdb_s']:6.2f}"
            f"  ({rfm['spark_s'] / max(rfm['duckdb_s'], 0.01):5.1f}x)  {rfm['customers']:>9,} customers"
            f"  (segments stage {result['spark_s']['segments']:.2f} s: RFM + lifecycle + publish)"
        )


if __name__ == "__main__":
    main()
