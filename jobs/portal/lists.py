"""What the portal shows of the campaign exports and nightly reports, read from the object
store (local or S3) through :mod:`jobs.platform.storage`, and the funnel from the warehouse.

Every name that reaches a storage key is checked here first: campaign ids against the
configured campaigns, dates as ISO dates, file names against the two export files. A request
can therefore never name a key outside ``campaigns/<id>/date=<D>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from jobs.activation.export import CONTACT_FIELD, MANIFEST, export_prefix, exports_storage
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import one_line
from jobs.platform.storage import CHUNK_BYTES, Storage, open_storage
from jobs.platform.warehouse import query_frame

log = logging.getLogger(__name__)
EXPORT_FILES = {"targets.csv": "text/csv; charset=utf-8", "targets.parquet": "application/vnd.apache.parquet"}
CONTACT_COLUMNS = tuple(field for field in CONTACT_FIELD.values() if field)
_DATE_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})/")


class BadRequest(ValueError):
    """A parameter that is not even well-formed (400)."""


class NotFound(LookupError):
    """A well-formed name of something that does not exist (404)."""


class Unavailable(RuntimeError):
    """Something exists but cannot be read right now (503)."""


def parse_day(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise BadRequest(f"{text[:40]!r} is not a date in YYYY-MM-DD form")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{text!r} is not a calendar date") from None


def check_file_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or ".." in name:
        raise BadRequest(f"{name[:40]!r} is not a file name")
    if name not in EXPORT_FILES:
        raise NotFound(f"an export has no file {name!r} (only {', '.join(EXPORT_FILES)})")
    return name


class Exports:
    """The campaigns' exports and funnel, and the nightly reports, as the portal reads them."""

    def __init__(self, config: PipelineConfig, campaigns: dict[str, dict]):
        self.config = config
        self.campaigns = campaigns  # id -> {"name", "channel", "priority", "description"}
        self.storage: Storage = exports_storage(config)
        self.reports: Storage = open_storage(
            config.storage.reports_root, config.storage.s3_endpoint_url, config.storage.s3_region
        )
        self._engine: sa.Engine | None = None

    # names --------------------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> dict:
        if not re.fullmatch(r"[a-z0-9_]{1,64}", campaign_id):
            raise BadRequest(f"{campaign_id[:40]!r} is not a campaign id")
        if campaign_id not in self.campaigns:
            raise NotFound(f"there is no campaign {campaign_id!r}")
        return self.campaigns[campaign_id]

    # exports ------------------------------------------------------------------------------

    def dates(self, campaign_id: str) -> list[date]:
        """Dates with a complete export (its manifest written), newest first."""
        self.campaign(campaign_id)
        found = {
            date.fromisoformat(match.group(1))
            for info in self.storage.list(f"campaigns/{campaign_id}/")
            if info.key.endswith("/" + MANIFEST) and (match := _DATE_FOLDER.search(info.key))
        }
        return sorted(found, reverse=True)

    def manifest(self, campaign_id: str, day: date) -> dict:
        self.campaign(campaign_id)
        key = export_prefix(campaign_id, day) + MANIFEST
        if not self.storage.exists(key):
            raise NotFound(f"campaign {campaign_id!r} has no export for {day.isoformat()}")
        return json.loads(self.storage.read_bytes(key))

    def export_file(self, campaign_id: str, day: date, name: str) -> tuple[str, dict, dict]:
        """(storage key, the file's manifest entry, the manifest), checked against the manifest."""
        check_file_name(name)
        manifest = self.manifest(campaign_id, day)
        entry = manifest.get("files", {}).get(name)
        key = export_prefix(campaign_id, day) + name
        found = self.storage.list(key)
        if entry is None or not found:
            raise NotFound(f"the export of {campaign_id!r} on {day.isoformat()} has no {name}")
        if found[0].size != entry["bytes"]:
            raise Unavailable(
                f"{name} of {campaign_id!r} on {day.isoformat()} does not match its manifest "
                f"({found[0].size} bytes, manifest {entry['bytes']}): it is being replaced, or damaged"
            )
        return key, entry, manifest

    def stream(self, key: str) -> Iterator[bytes]:
        """The object in 1 MiB chunks, never whole in memory."""
        with contextlib.closing(self.storage.open_read(key)) as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk

    def preview(self, key: str, rows: int, with_contacts: bool) -> pd.DataFrame:
        """The first ``rows`` rows of the CSV at ``key`` (from :meth:`export_file`; only its head
        is read); contact columns are dropped unless ``with_contacts``."""
        with contextlib.closing(self.storage.open_read(key)) as source:
            frame = pd.read_csv(io.BufferedReader(_Readable(source)), nrows=rows, dtype=str, keep_default_na=False)
        if not with_contacts:
            frame = frame.drop(columns=[c for c in CONTACT_COLUMNS if c in frame.columns])
        return frame

    # reports ------------------------------------------------------------------------------

    def report_dates(self) -> list[date]:
        found = {
            date.fromisoformat(match.group(1))
            for info in self.reports.list("nightly/")
            if info.key.endswith("/report.html") and (match := _DATE_FOLDER.search(info.key))
        }
        return sorted(found, reverse=True)

    def report_html(self, day: date) -> bytes:
        key = f"nightly/date={day.isoformat()}/report.html"
        if not self.reports.exists(key):
            raise NotFound(f"there is no nightly report for {day.isoformat()}")
        return self.reports.read_bytes(key)

    # funnel (warehouse) -------------------------------------------------------------------

    def funnel(self, campaign_id: str | None = None, day: date | None = None) -> pd.DataFrame:
        """``mart_campaign_funnel`` rows: each campaign's latest, or one campaign's dates (or date)."""
        schema = self.config.warehouse.schema_name
        if campaign_id is None:
            query = (
                f"select f.* from {schema}.mart_campaign_funnel f join (select campaign_id, "
                f"max(snapshot_date) as snapshot_date from {schema}.mart_campaign_funnel group by campaign_id) latest "
                "using (campaign_id, snapshot_date)"
            )
            params = {}
        else:
            query = f"select * from {schema}.mart_campaign_funnel where campaign_id = :c"
            params = {"c": campaign_id}
            if day is not None:
                query += " and snapshot_date = :d"
                params["d"] = day
        try:
            with self._warehouse() as conn:
                frame = query_frame(conn, query + " order by snapshot_date desc, priority", **params)
        except sa.exc.DBAPIError as exc:  # no funnel table yet, a server that does not answer, a lock
            log.warning("portal: the campaign funnel could not be read: %s", one_line(exc))
            raise Unavailable(
                "the campaign funnel cannot be read right now (has the pipeline published yet?)"
            ) from None
        frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).dt.date
        return frame

    @contextlib.contextmanager
    def _warehouse(self) -> Iterator[sa.Connection]:
        """A read-only connection. A DuckDB file admits one writing process: the portal takes
        the pipeline's writer-lock file shared, so a nightly run waits the milliseconds of a
        read instead of failing, and a page shows 'busy' while a run writes."""
        url = self.config.warehouse.url
        if self._engine is None:
            if url.startswith("duckdb"):
                self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"read_only": True})
            else:
                self._engine = sa.create_engine(url, pool_pre_ping=True)
        if not (url.startswith("duckdb:///") and ":memory:" not in url):
            with self._engine.connect() as conn:
                yield conn
            return
        database = Path(url[len("duckdb:///") :])
        if not database.exists():
            raise Unavailable("the warehouse has not been loaded yet: run the pipeline first")
        with database.with_name(database.name + ".lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Unavailable(
                    "the nightly run is writing the warehouse right now; funnel figures return when it finishes"
                ) from None
            try:
                with self._engine.connect() as conn:
                    yield conn
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class _Readable(io.RawIOBase):
    """Any object with ``read(n)`` (a local file, botocore's StreamingBody) as a raw stream."""

    def __init__(self, source):
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
