"""Reading and writing the CSV/Parquet files analysts hand to the ``marketing`` commands, with
one-line errors that name the file (and the column) instead of Spark's stack traces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame

from jobs.platform.errors import InputFileError


def file_format(path: Path, role: str) -> str:
    """``csv`` or ``parquet`` from the extension; anything else is an error naming ``role``."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputFileError(f"{role} file {path}: use a .csv or .parquet file (got {suffix or 'no extension'!r})")
    return suffix[1:]


def read_table(spark, path: Path, role: str, required: Sequence[str]) -> DataFrame:
    """A CSV (with header) or Parquet file as a Spark DataFrame holding ``required`` columns."""
    kind = file_format(path, role)
    if not path.is_file():
        raise InputFileError(f"{role} file {path} does not exist")
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
        raise InputFileError(f"{role} file {path}: missing column(s) {', '.join(missing)} (has: {', '.join(sorted(columns))})")
    return frame


def write_frame(frame: pd.DataFrame, path: Path, role: str) -> None:
    kind = file_format(path, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
