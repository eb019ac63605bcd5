"""Reading and writing the CSV/Parquet files analysts hand to the ``marketing`` commands, with
one-line errors that name the file (and the column) instead of Spark's stack traces."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.platform.errors import InputFileError


def file_format(path: Path, role: str) -> str:
    """``csv`` or ``parquet`` from the extension; anything else is an error naming ``role``."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputFileError(f"{role} file {path}: use a .csv or .parquet file (got {suffix or 'no extension'!r})")
    return suffix[1:]


def check_csv_rows(path: Path, role: str) -> int:
    """Stream a CSV once and fail on the first row whose field count differs from the
    header's, naming its line; return the number of data rows. (Spark's own FAILFAST error
    for a ragged row is a long JVM stack without a line number.)"""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputFileError(f"{role} file {path} is empty (not even a header line)")
        rows = 0
        for row in reader:
            if not row:  # a blank line
                continue
            if len(row) != len(header):
                raise InputFileError(
                    f"{role} file {path} line {reader.line_num}: {len(row)} field(s), the header has {len(header)}"
                )
            rows += 1
    return rows


def read_table(spark, path: Path, role: str, required: Sequence[str]) -> DataFrame:
    """A CSV (with header) or Parquet file as a Spark DataFrame holding ``required`` columns."""
    kind = file_format(path, role)
    if not path.is_file():
        raise InputFileError(f"{role} file {path} does not exist")
    if kind == "csv":
        check_csv_rows(path, role)
    try:
        frame = (
            spark.read.option("header", True).option("mode", "FAILFAST").csv(str(path))
            if kind == "csv"
            else spark.read.parquet(str(path))
        )
        columns = set(frame.columns)
    except Exception as exc:  # Spark's own parse errors are long; name the file instead
        raise InputFileError(f"{role} file {path} cannot be read as {kind}: {str(exc).splitlines()[0][:200]}") from exc
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputFileError(
            f"{role} file {path}: missing column(s) {', '.join(missing)} (has: {', '.join(sorted(columns))})"
        )
    return frame


def timestamp_column(raw: Column) -> Column:
    """A timestamp from ISO-8601 text or Unix epoch seconds or milliseconds (as many public
    interaction exports use); null where it is none of them. Whole numbers of 10^11 and more
    are milliseconds (10^11 seconds is the year 5138)."""
    text = F.trim(raw.cast("string"))
    number = F.when(text.rlike(r"^[0-9]+(\.[0-9]+)?$"), text.try_cast("double"))
    return (
        F.when(number >= 1e11, F.timestamp_millis(number.cast("long")))
        .when(number.isNotNull(), F.timestamp_micros((number * 1_000_000).cast("long")))
        .otherwise(text.try_cast("timestamp"))
    )


def write_frame(frame: pd.DataFrame, path: Path, role: str) -> None:
    kind = file_format(path, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
