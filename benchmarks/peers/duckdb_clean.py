"""DuckDB peer of the Spark event-cleaning stage (``jobs/ingest/clean_events.py``), for benchmarks.

:func:`clean_events_duckdb` runs the logic of ``clean_events`` (``read_raw_lines``,
``parse_events``/``screen_lines``, ``classify_events``, ``mark_duplicates``, ``flag_bots``, with
``lake.window_for``) on the same raw landing files, as DuckDB SQL, and writes the same outputs:
clean rows as Parquet partitioned by ``event_date`` (``clean/events/batch_date=D/``) and
quarantined rows (``quarantine/events/batch_date=D/``) under ``out_dir``, with the same columns,
values, reasons, details and payloads. :func:`known_products_duckdb` is ``_known_products``.

The same as Spark, rule by rule:

- lines end at ``\\n`` only (a ``\\r`` stays in its line), an unterminated last line counts, line
  numbers are 1-based per file, and ``source_file`` is the landing key as Spark spells it (from
  its URI-encoded file name);
- reasons and their precedence: ``line_too_long`` (bytes > ``max_line_bytes``; payload cut to
  its first 4096 characters), ``invalid_encoding`` (strict UTF-8 on the raw bytes; detail with
  the bytes in MIME base64, as Spark's ``base64``), ``malformed_json`` (not a JSON object as
  Spark's parser reads it: trailing commas, ``nan``/``inf`` and other tokens Jackson refuses are
  malformed here too, although DuckDB's JSON reader takes them), ``missing_required_field``,
  ``wrong_type``, ``invalid_timestamp``, ``invalid_enum``, ``too_late``, ``unknown_product_id``;
- every field as Spark's ``from_json`` to ``map<string,string>`` gives it: strings unescaped,
  other values as JSON text (integers verbatim, floats as Java's ``Double.toString`` writes
  them, e.g. ``1.0E7``, ``NaN`` quoted), the first of repeated keys;
- ``trim`` (spaces only), Spark's ``try_cast`` to ``bigint`` (digits only, no fraction) and to
  ``decimal(12,2)`` (Java ``BigDecimal`` syntax, HALF_UP), and Spark's string-to-timestamp
  parser (``yyyy[-m[-d[ |T]h[:m[:s[.fraction][zone]]]]]``; zones ``Z``, ``+h[h][[:]mm[[:]ss]]``,
  ``UTC``/``GMT``/``UT`` with or without an offset, Java's short ids such as ``EST``, region ids);
- the plausibility bounds: from a year before D to the window's end plus the tolerance, in UTC;
- duplicates: every occurrence of an ``event_id`` after the first in (source_file, line_number)
  order, and ids in ``seen_event_ids_parquet``; bots: a session with more than
  ``bot_max_events_per_minute`` events in any UTC minute, all its events flagged.

Deliberate differences (none occurs in the simulator's data; ``check_peers.py`` lists them on
hand-made lines):

- reading: DuckDB has no gzip function for a blob and its CSV/JSON readers cannot keep a line's
  raw bytes nor split at ``\\n`` only, so files are decompressed and split in Python (zlib +
  numpy, zero-copy into Arrow; the time counts as DuckDB's). Three rare cases DuckDB has no
  function for are small Python functions called from the SQL: a float outside Java's plain
  range written as ``Double.toString`` does, and the payloads of invalid UTF-8 / too long lines;
- JSON that Spark's Jackson parser accepts but DuckDB's refuses is ``malformed_json`` here:
  single-quoted strings, an escaped lone surrogate (text after the object is ignored by both);
- non-string values nested in an object or array are in DuckDB's rendering (floats, spacing),
  and a repeated unknown key keeps one entry (the first) where Spark's map keeps both;
- a timestamp of a time only (``10:00:00``) takes Spark's current date there and is invalid
  here; region zone ids are ICU's (DuckDB) rather than Java's tz database.
"""

from __future__ import annotations

import gzip
import math
import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
from duckdb import sqltypes

from jobs.ingest.clean_events import CLEAN_COLUMNS, QUARANTINE_COLUMNS, REASONS, TRUNCATED_PAYLOAD_CHARS
from jobs.platform.interface import CHANNELS, EVENT_FIELDS, EVENT_TYPES, REQUIRED_EVENT_FIELDS
from jobs.platform.lake import (
    clean_events_prefix,
    clean_source_prefix,
    quarantine_prefix,
    raw_keys_prefix,
    window_for,
)

# java.time.ZoneId.SHORT_IDS, which Spark passes to ZoneId.of when it parses a zone.
JAVA_SHORT_IDS = {
    "ACT": "Australia/Darwin", "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo", "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago", "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris", "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "MIT": "Pacific/Apia", "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland", "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
    "EST": "-05:00", "MST": "-07:00", "HST": "-10:00",
}  # fmt: skip
# Bare words Jackson (with Spark's allowNonNumericNumbers) accepts outside strings.
JSON_WORDS = ("true", "false", "null", "NaN", "Infinity", "-Infinity", "-INF")
# Characters java.net.URI leaves as they are in a path (Spark's file names are URIs).
_URI_PATH_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-!.~'()*,;:$&+=/@")


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


# Helpers, each a transcription of the Spark (or Java) behaviour it names.
MACROS = [
    # UTF8String.toLong / Spark's timestamp parser trim bytes <= 0x20 and DEL; Java's String.trim
    # (BigDecimal, ZoneId) bytes <= 0x20.
    "CREATE MACRO ctl_trim(s) AS trim(s, " + " || ".join(f"chr({c})" for c in [*range(33), 127]) + ")",
    "CREATE MACRO java_trim(s) AS trim(s, " + " || ".join(f"chr({c})" for c in range(33)) + ")",
    # try_cast(string as bigint): optional sign and digits only, in range.
    r"""CREATE MACRO spark_bigint(s) AS CASE WHEN regexp_full_match(ctl_trim(s), '[+-]?[0-9]+')
        THEN TRY_CAST(ctl_trim(s) AS BIGINT) END""",
    # try_cast(string as decimal(12,2)): java.math.BigDecimal syntax, rounded HALF_UP, null on overflow.
    r"""CREATE MACRO spark_decimal(s) AS CASE
        WHEN regexp_full_match(java_trim(s), '[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?')
        THEN TRY_CAST(java_trim(s) AS DECIMAL(12, 2)) END""",
    # A map<string,string> value of from_json: strings unescaped, JSON null is null, integers as
    # written, floats as Jackson writes them (Double.toString, non-finite quoted), others as JSON.
    # DuckDB writes a float of Java's plain range (1e-3 <= |x| < 1e7) as Java does; the rest go
    # to java_number_text. (Macros are inlined and DuckDB computes a repeated subexpression for
    # every row, even under CASE: a value used twice is bound once through a lambda.)
    r"""CREATE MACRO _json_text(j, unescaped) AS CASE
        WHEN j IS NULL OR j = 'null' THEN NULL
        WHEN starts_with(j, '"') THEN unescaped
        WHEN regexp_full_match(j, '-?[0-9]+|true|false|[\[{].*', 's') THEN j
        WHEN regexp_full_match(j, '-?[0-9]+\.[0-9]+')
            AND list_transform([abs(TRY_CAST(j AS DOUBLE))], lambda x: x >= 0.001 AND x < 10000000)[1] THEN j
        ELSE java_number_text(j) END""",
    # (j: the value as JSON text; unescaped: as json_extract_string gives it, used for strings)
    r"CREATE MACRO json_value_text(j, unescaped) AS _json_text(CAST(j AS VARCHAR), unescaped)",
    # Text DuckDB's JSON reader accepts but Jackson refuses: a trailing comma, or a bare word other
    # than true/false/null/NaN/Infinity/-Infinity/-INF (the cheap tests on the raw text go first).
    rf"""CREATE MACRO _refused_outside_strings(outside) AS regexp_matches(outside, ',[ \t\r\n]*[\]}}]')
        OR len(list_filter(regexp_extract_all(outside, '(?:^|[^0-9A-Za-z.+-])(-?[A-Za-z]+)', 1),
                           lambda w: w NOT IN ({_sql_list(JSON_WORDS)}))) > 0""",
    r"""CREATE MACRO jackson_refuses(t) AS CASE
        WHEN regexp_matches(t, ',[ \t\r\n]*[\]}]') OR regexp_matches(t, '(?i)nan|inf')
        THEN list_transform([regexp_replace(t, '"(?:[^"\\]|\\.)*"', '""', 'g')],
                            lambda outside: _refused_outside_strings(outside))[1]
        ELSE false END""",
    # Jackson reads the first JSON value of a line and ignores what follows it: the shortest
    # prefix ending at a '}' that is a JSON document (an object is never a prefix of another).
    r"""CREATE MACRO first_object(t) AS list_transform([string_split(t, '}')], lambda parts: list_filter(
        list_transform(range(1, len(parts)), lambda i: array_to_string(parts[1:i], '}') || '}'),
        lambda candidate: json_valid(candidate))[1])[1]""",
    # Spark's string-to-timestamp: the parts, the local date-time, and the zone's offset.
    r"""CREATE MACRO ts_parts(s) AS regexp_extract(ctl_trim(s),
        '^([+-]?)([0-9]{4,6})(?:-([0-9]{1,2})(?:-([0-9]{1,2})(?:[ T]([0-9]{1,2})(?::([0-9]{1,2})'
        || '(?::([0-9]{1,2})(?:\.([0-9]*))?(.*))?)?)?)?)?$',
        ['sign', 'year', 'month', 'day', 'hour', 'minute', 'second', 'fraction', 'zone'])""",
    r"""CREATE MACRO _num(s, default_value) AS coalesce(TRY_CAST(nullif(s, '') AS BIGINT), default_value)""",
    r"""CREATE MACRO ts_local(p) AS CASE
        WHEN p.year <> '' AND _num(p.hour, 0) < 24 AND _num(p.minute, 0) < 60 AND _num(p.second, 0) < 60
        THEN CAST(try(make_date(CAST(p.sign || p.year AS BIGINT), _num(p.month, 1), _num(p.day, 1))) AS TIMESTAMP)
            + to_microseconds(_num(p.hour, 0) * 3600000000 + _num(p.minute, 0) * 60000000
                + _num(p.second, 0) * 1000000 + CAST(rpad(left(p.fraction, 6), 6, '0') AS BIGINT)) END""",
    # The zone text as getZoneId rewrites it: (+|-)h: -> (+|-)0h:, (+|-)hh:m$ -> (+|-)hh:0m, short ids.
    r"""CREATE MACRO _zone_fix(z) AS regexp_replace(regexp_replace(java_trim(z), '([+-])([0-9]):', '\10\2:'),
        '([+-])([0-9][0-9]):([0-9])$', '\1\2:0\3')""",
    "CREATE MACRO _short_id(z) AS coalesce(MAP {"
    + ", ".join(f"'{k}': '{v}'" for k, v in JAVA_SHORT_IDS.items())
    + "}[z], z)",
    "CREATE MACRO zone_id(z) AS _short_id(_zone_fix(z))",
    # java.time.ZoneOffset.of: +h, +hh, +hh:mm, +hhmm, +hh:mm:ss, +hhmmss, at most 18:00.
    r"""CREATE MACRO _offset_digits(sign, d) AS CASE
        WHEN length(d) = 1 THEN CAST(d AS BIGINT) * 3600 * sign
        WHEN CAST(left(d, 2) AS BIGINT) <= 18 AND _num(substr(d, 3, 2), 0) <= 59 AND _num(substr(d, 5, 2), 0) <= 59
            AND CAST(left(d, 2) AS BIGINT) * 3600 + _num(substr(d, 3, 2), 0) * 60 + _num(substr(d, 5, 2), 0) <= 64800
        THEN (CAST(left(d, 2) AS BIGINT) * 3600 + _num(substr(d, 3, 2), 0) * 60 + _num(substr(d, 5, 2), 0)) * sign
        END""",
    r"""CREATE MACRO offset_seconds(o) AS CASE
        WHEN regexp_full_match(o, '[+-]([0-9]|[0-9]{2}|[0-9]{2}:[0-9]{2}|[0-9]{4}|[0-9]{2}:[0-9]{2}:[0-9]{2}|[0-9]{6})')
        THEN _offset_digits(CASE WHEN starts_with(o, '-') THEN -1 ELSE 1 END, replace(substr(o, 2), ':', '')) END""",
    # The zone's offset in seconds (regions: null, see zone_region), as ZoneId.of reads it.
    r"""CREATE MACRO zone_offset(zid) AS CASE
        WHEN zid = '' OR zid = 'Z' OR zid IN ('UTC', 'GMT', 'UT') THEN 0
        WHEN starts_with(zid, '+') OR starts_with(zid, '-') THEN offset_seconds(zid)
        WHEN regexp_matches(zid, '^(UTC|GMT|UT)[+-]') THEN offset_seconds(regexp_replace(zid, '^(UTC|GMT|UT)', ''))
        END""",
    r"""CREATE MACRO zone_region(zid) AS CASE
        WHEN zone_offset(zid) IS NULL AND length(zid) > 1 AND regexp_full_match(zid, '[A-Za-z][A-Za-z0-9~/._+-]+')
            AND zid IN (SELECT name FROM zone_names) THEN zid END""",
    # The MIME base64 Spark's base64() writes: lines of 76 characters separated by CRLF.
    r"""CREATE MACRO mime_base64(b) AS
        regexp_replace(regexp_replace(to_base64(b), '(.{76})', '\1' || chr(13) || chr(10), 'g'), '\r\n$', '')""",
]


def spark_file_key(path: str) -> str:
    """The landing key Spark's ``_landing_key`` takes from ``input_file_name()``: the path as a
    URI (characters java.net.URI does not allow in a path %-encoded, non-ASCII kept), from
    ``events/date=`` on."""
    uri = "".join(
        c if c in _URI_PATH_SAFE or ord(c) > 127 else "".join(f"%{b:02X}" for b in c.encode())
        for c in str(Path(path).absolute())
    )
    start = uri.find("events/date=")
    return uri[start:] if start >= 0 else ""


def _split_lines(data: bytes) -> pa.LargeBinaryArray:
    """The lines of a file as Hadoop's LineRecordReader with ``\\n`` as separator gives them:
    without the ``\\n``, plus an unterminated last line; no copy of a line into Python."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    count = len(ends)
    kept = raw[raw != 10]
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends - np.arange(count)  # each earlier line ended with one newline
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(kept)])


def read_raw_lines(paths: list[str]) -> pa.Table:
    """``value`` (the line's bytes), ``source_file`` (landing key), ``line_number`` (1-based), as
    ``read_raw_lines`` + ``_landing_key`` give them. ``.gz`` files are gunzipped (several members
    are fine), others read as they are, like Hadoop's codec choice by file name."""
    tables = []
    for path in paths:
        data = Path(path).read_bytes()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        values = _split_lines(data)
        tables.append(
            pa.table(
                {
                    "value": values,
                    "source_file": pa.repeat(spark_file_key(path), len(values)).cast(pa.string()),
                    "line_number": pa.array(np.arange(1, len(values) + 1, dtype=np.int64)),
                }
            )
        )
    schema = pa.schema([("value", pa.large_binary()), ("source_file", pa.string()), ("line_number", pa.int64())])
    return pa.concat_tables(tables) if tables else schema.empty_table()


def java_number_text(text: str) -> str:
    """A JSON number (as DuckDB writes it) as Jackson writes a double: ``Double.toString``
    (plain for 1e-3 <= |x| < 1e7 with at least one decimal, else ``d.dddE<n>``; shortest
    digits), NaN and infinities quoted (an overflowing literal such as 1e400 is infinite)."""
    value = float(text)
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    significant = "".join(map(str, digits)).rstrip("0")
    point = len(digits) + exponent  # digits before the decimal point
    if 1e-3 <= abs(value) < 1e7:
        if point <= 0:
            text = "0." + "0" * -point + significant
        else:
            text = (significant + "0" * point)[:point] + "." + (significant[point:] or "0")
    else:
        text = f"{significant[0]}.{significant[1:] or '0'}E{point - 1}"
    return ("-" if value < 0 else "") + text


def _make_valid_utf8(value: bytes) -> str:
    """Spark's ``make_valid_utf8``: invalid sequences replaced by U+FFFD."""
    return value.decode("utf-8", errors="replace")


def _truncated_payload(value: bytes) -> str:
    """``make_valid_utf8(substring(value, 1, TRUNCATED_PAYLOAD_CHARS))``: Spark's substring
    counts characters by their first byte (``UTF8String.numBytesForFirstByte``: a byte that
    cannot start a UTF-8 sequence counts as a character of one byte)."""
    position = 0
    for _ in range(TRUNCATED_PAYLOAD_CHARS):
        if position >= len(value):
            break
        first = value[position]
        position += 2 if 0xC2 <= first <= 0xDF else 3 if 0xE0 <= first <= 0xEF else 4 if 0xF0 <= first <= 0xF4 else 1
    return _make_valid_utf8(value[:position])


def _has_parquet(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("*.parquet"))


def known_products_duckdb(lake_root: str, logical_date: date) -> set[int] | None:
    """``_known_products``: product ids extracted up to D (clean zone) and D's key set of the
    source's products; None when there is neither."""
    root = Path(lake_root)
    clean, keys = root / clean_source_prefix("products"), root / raw_keys_prefix("products", logical_date)
    parts = []
    if _has_parquet(clean):
        parts.append(
            f"SELECT product_id FROM read_parquet('{clean}/**/*.parquet', hive_partitioning = true, "
            f"union_by_name = true) WHERE CAST(extract_date AS DATE) <= DATE '{logical_date.isoformat()}'"
        )
    if _has_parquet(keys):
        parts.append(f"SELECT CAST(product_id AS BIGINT) FROM read_parquet('{keys}/**/*.parquet')")
    if not parts:
        return None
    with duckdb.connect() as con:
        return {row[0] for row in con.sql(" UNION ".join(parts)).fetchall() if row[0] is not None}


def _classify_sql(tz: str, max_line_bytes: int | None, known: bool) -> str:
    """One row per line: the clean columns (as ``classify_events`` types them), ``reason``,
    ``detail`` and ``payload``. Parameters: $earliest, $latest (naive UTC), $oldest (date)."""
    paths = ", ".join(f"'/{name}'" for name in EVENT_FIELDS)
    raw = ",\n            ".join(
        f"json_value_text(vals[{i + 1}], strings[{i + 1}]) AS raw_{name}" for i, name in enumerate(EVENT_FIELDS)
    )
    too_long = f"octet_length(value) > {int(max_line_bytes)}" if max_line_bytes else "false"
    missing = ", ".join(
        f"CASE WHEN raw_{name} IS NULL OR trim(raw_{name}) = '' THEN '{name}' END" for name in REQUIRED_EVENT_FIELDS
    )

    def bad_number(name: str, cast: str) -> str:
        return f"CASE WHEN trim(raw_{name}) <> '' AND {cast}(trim(raw_{name})) IS NULL THEN '{name}' END"

    wrong = ", ".join(
        [
            bad_number("user_id", "spark_bigint"),
            bad_number("product_id", "spark_bigint"),
            bad_number("price", "spark_decimal"),
        ]
    )
    unknown = (
        "product_id IS NOT NULL AND product_id NOT IN (SELECT product_id FROM known_products)" if known else "false"
    )
    return f"""
    WITH screened AS (
        SELECT value, source_file, line_number,
            CASE WHEN {too_long} THEN 'line_too_long'
                 WHEN try(decode(value)) IS NULL THEN 'invalid_encoding' END AS line_reason
        FROM raw_lines
    ), decoded AS (
        SELECT *, CASE WHEN line_reason IS NULL THEN decode(value) END AS text
        FROM screened
    ), parsed AS (
        SELECT *,
            CASE WHEN regexp_matches(text, '^[ \\t\\r\\n]*\\{{')
                 THEN CASE WHEN json_valid(text) THEN text ELSE first_object(text) END END AS object_text,
            object_text IS NOT NULL AND NOT jackson_refuses(object_text) AS is_object
        FROM decoded
    ), fields AS (
        SELECT *, CASE WHEN is_object THEN json_extract(object_text, [{paths}]) END AS vals,
            CASE WHEN is_object THEN json_extract_string(object_text, [{paths}]) END AS strings,
            CASE WHEN is_object THEN list_filter(json_keys(object_text),
                lambda k: k NOT IN ({_sql_list(EVENT_FIELDS)})) END AS extra_keys
        FROM parsed
    ), raw_fields AS (
        SELECT *,
            {raw},
            CASE WHEN len(extra_keys) > 0 THEN
                map(list_filter(extra_keys, lambda k, i: list_position(extra_keys, k) = i),
                    list_transform(list_filter(extra_keys, lambda k, i: list_position(extra_keys, k) = i),
                        lambda k: json_value_text(
                            json_extract(object_text, '/' || replace(replace(k, '~', '~0'), '/', '~1')),
                            json_extract_string(object_text, '/' || replace(replace(k, '~', '~0'), '/', '~1')))))
            ELSE map(CAST([] AS VARCHAR[]), CAST([] AS VARCHAR[])) END AS extra_fields
        FROM fields
    ), ts_split AS (
        SELECT *, ts_parts(raw_event_ts) AS ts FROM raw_fields
    ), ts_zoned AS (
        SELECT *, ts_local(ts) AS local_at, zone_id(ts.zone) AS zid FROM ts_split
    ), ts_offset AS (
        SELECT *, zone_offset(zid) AS zone_seconds FROM ts_zoned
    ), located AS (
        SELECT *,
            CASE WHEN zone_seconds IS NOT NULL THEN local_at - to_seconds(zone_seconds)
                 WHEN zone_region(zid) IS NOT NULL THEN timezone('UTC', timezone(zid, local_at))
            END AS event_at
        FROM ts_offset
    ), typed AS (
        SELECT *,
            trim(raw_event_id) AS event_id,
            lower(trim(raw_event_type)) AS event_type,
            CAST(timezone('{tz}', timezone('UTC', event_at)) AS DATE) AS event_date,
            spark_bigint(trim(raw_user_id)) AS user_id,
            trim(raw_anonymous_id) AS anonymous_id,
            trim(raw_session_id) AS session_id,
            spark_bigint(trim(raw_product_id)) AS product_id,
            nullif(trim(raw_query), '') AS search_query,
            lower(trim(raw_channel)) AS channel,
            lower(nullif(trim(raw_device), '')) AS device,
            lower(nullif(trim(raw_utm_source), '')) AS utm_source,
            spark_decimal(trim(raw_price)) AS price,
            concat_ws(',', {missing}) AS missing,
            concat_ws(',', {wrong}) AS wrong,
            concat_ws(',', CASE WHEN event_type NOT IN ({_sql_list(EVENT_TYPES)}) THEN 'event_type' END,
                           CASE WHEN channel NOT IN ({_sql_list(CHANNELS)}) THEN 'channel' END) AS bad_enum
        FROM located
    ), classified AS (
        SELECT *,
            CASE WHEN line_reason IS NOT NULL THEN line_reason
                 WHEN NOT is_object THEN 'malformed_json'
                 WHEN missing <> '' THEN 'missing_required_field'
                 WHEN wrong <> '' THEN 'wrong_type'
                 WHEN event_at IS NULL OR event_at < $earliest OR event_at > $latest THEN 'invalid_timestamp'
                 WHEN bad_enum <> '' THEN 'invalid_enum'
                 WHEN event_date < $oldest THEN 'too_late'
                 WHEN {unknown} THEN 'unknown_product_id'
            END AS reason
        FROM typed
    )
    SELECT {", ".join(c for c in CLEAN_COLUMNS if c != "is_bot")}, reason,
        CASE reason
            WHEN 'line_too_long' THEN 'line of ' || octet_length(value) || ' bytes exceeds clean.max_line_bytes='
                || '{max_line_bytes}; payload truncated to its first {TRUNCATED_PAYLOAD_CHARS} characters'
            WHEN 'invalid_encoding' THEN 'not valid UTF-8; original bytes (base64): ' || mime_base64(value)
            WHEN 'missing_required_field' THEN missing
            WHEN 'wrong_type' THEN wrong
            WHEN 'invalid_timestamp' THEN coalesce(raw_event_ts, '')
            WHEN 'invalid_enum' THEN bad_enum
            WHEN 'too_late' THEN CAST(event_date AS VARCHAR)
            WHEN 'unknown_product_id' THEN CAST(product_id AS VARCHAR)
        END AS detail,
        CASE reason
            WHEN 'line_too_long' THEN truncated_payload(value)
            WHEN 'invalid_encoding' THEN make_valid_utf8(value)
            ELSE text
        END AS payload
    FROM classified
    """


def clean_events_duckdb(
    raw_paths: list[str],
    logical_date: date,
    *,
    tz: str,
    late_window_days: int,
    future_tolerance_minutes: int,
    max_line_bytes: int,
    bot_max_events_per_minute: int,
    known_products: set[int] | None,
    seen_event_ids_parquet: str | None,
    out_dir: str,
    threads: int | None = None,
) -> dict:
    """Clean batch D of the raw files like ``clean_events``; write the clean rows under
    ``out_dir/clean/events/batch_date=D/`` (partitioned by event_date) and the quarantine under
    ``out_dir/quarantine/events/batch_date=D/``; return the counts.

    ``seen_event_ids_parquet``: Parquet (file, folder or glob) of event ids kept by earlier
    batches. The lake's ``clean/events/`` folder may be given as it is: when it has the
    ``batch_date``/``event_date`` partitions, Spark's filter is applied (batch before D, event
    date from D - late_window_days - 1 on).

    ``input`` counts the lines of ``raw_paths``; Spark's ``input`` and ``duplicates`` also count
    the lines of files collect set aside as duplicate files (the manifest's ``duplicate_line_count``).
    """
    window = window_for(logical_date, ZoneInfo(tz))
    earliest = datetime.combine(logical_date - timedelta(days=365), datetime.min.time())  # UTC, naive
    latest = (window.end + timedelta(minutes=future_tolerance_minutes)).astimezone(UTC).replace(tzinfo=None)
    oldest = logical_date - timedelta(days=late_window_days)

    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TEMP TABLE zone_names AS SELECT name FROM pg_timezone_names()")
        # Python for the rare rows DuckDB has no function for (run only where the CASE sends them).
        con.create_function("java_number_text", java_number_text, [sqltypes.VARCHAR], sqltypes.VARCHAR)
        con.create_function("make_valid_utf8", _make_valid_utf8, [sqltypes.BLOB], sqltypes.VARCHAR)
        con.create_function("truncated_payload", _truncated_payload, [sqltypes.BLOB], sqltypes.VARCHAR)
        for macro in MACROS:
            con.execute(macro)
        raw_lines = read_raw_lines(raw_paths)
        con.register("raw_lines", raw_lines)
        if known_products is not None:
            known = pa.table({"product_id": pa.array(sorted(known_products), pa.int64())})
            con.register("known_products", known)
        con.execute(
            "CREATE TEMP TABLE classified AS " + _classify_sql(tz, max_line_bytes, known_products is not None),
            {"earliest": earliest, "latest": latest, "oldest": oldest},
        )
        con.unregister("raw_lines")

        seen = "SELECT NULL::VARCHAR AS event_id WHERE false"
        if seen_event_ids_parquet:
            source = f"read_parquet('{_parquet_glob(seen_event_ids_parquet)}', hive_partitioning = true)"
            columns = {row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            seen = f"SELECT event_id FROM {source}"
            if {"batch_date", "event_date"} <= columns:
                first_day = logical_date - timedelta(days=late_window_days + 1)
                seen += (
                    f" WHERE CAST(batch_date AS DATE) < DATE '{logical_date}'"
                    f" AND CAST(event_date AS DATE) >= DATE '{first_day}'"
                )
        con.execute(
            f"""CREATE TEMP TABLE marked AS
            SELECT * EXCLUDE (reason, detail, payload),
                row_number() OVER (PARTITION BY event_id ORDER BY source_file, line_number) > 1
                    OR event_id IN (SELECT event_id FROM ({seen}) WHERE event_id IS NOT NULL) AS is_duplicate
            FROM classified WHERE reason IS NULL"""
        )
        con.execute(
            f"""CREATE TEMP TABLE clean AS
            WITH kept AS (SELECT * EXCLUDE (is_duplicate) FROM marked WHERE NOT is_duplicate),
            bots AS (
                SELECT DISTINCT session_id FROM kept
                GROUP BY session_id, date_trunc('minute', event_at)
                HAVING count(*) > {int(bot_max_events_per_minute)}
            )
            SELECT * REPLACE (timezone('UTC', event_at) AS event_at),
                session_id IN (SELECT session_id FROM bots) AS is_bot
            FROM kept"""
        )
        _write_outputs(con, Path(out_dir), logical_date)
        counts = _counts(con, logical_date)
    finally:
        con.close()
    return counts


def _parquet_glob(path: str) -> str:
    return f"{path.rstrip('/')}/**/*.parquet" if Path(path).is_dir() else path


def _write_outputs(con: duckdb.DuckDBPyConnection, out: Path, logical_date: date) -> None:
    """Replace batch D's clean and quarantine folders (Spark's static overwrite)."""
    clean_dir = out / clean_events_prefix(logical_date)
    quarantine_dir = out / quarantine_prefix("events", logical_date)
    for folder in (clean_dir, quarantine_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    columns = ", ".join(CLEAN_COLUMNS)
    if con.execute("SELECT count(*) FROM clean").fetchone()[0]:
        con.execute(f"COPY (SELECT {columns} FROM clean) TO '{clean_dir}' (FORMAT parquet, PARTITION_BY (event_date))")
    else:  # like Spark: one empty file with the schema, under event_date=D
        empty = clean_dir / f"event_date={logical_date.isoformat()}"
        empty.mkdir()
        unpartitioned = ", ".join(c for c in CLEAN_COLUMNS if c != "event_date")
        con.execute(f"COPY (SELECT {unpartitioned} FROM clean) TO '{empty / 'part-0.parquet'}' (FORMAT parquet)")
    quarantined = ", ".join("'clean_events' AS stage" if c == "stage" else c for c in QUARANTINE_COLUMNS)
    con.execute(
        f"COPY (SELECT {quarantined} FROM classified WHERE reason IS NOT NULL) "
        f"TO '{quarantine_dir / 'part-0.parquet'}' (FORMAT parquet)"
    )


def _counts(con: duckdb.DuckDBPyConnection, logical_date: date) -> dict:
    by_reason = dict.fromkeys(REASONS, 0)
    lines = 0
    for reason, count in con.sql("SELECT reason, count(*) FROM classified GROUP BY reason").fetchall():
        lines += count
        if reason is not None:
            by_reason[reason] = by_reason.get(reason, 0) + count
    clean, bot, late = con.execute(
        "SELECT count(*), count(*) FILTER (is_bot), count(*) FILTER (event_date < $d) FROM clean",
        {"d": logical_date},
    ).fetchone()
    duplicates = con.execute("SELECT count(*) FROM marked WHERE is_duplicate").fetchone()[0]
    return {
        "input": lines,
        "clean": clean,
        "duplicates": duplicates,
        "quarantined": sum(by_reason.values()),
        "by_reason": by_reason,
        "bot": bot,
        "late": late,
    }
