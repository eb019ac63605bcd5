"""Campaign exports for the people who send the messages.

Per campaign allocated on D, under ``storage.exports_root`` (local or S3)::

    campaigns/<campaign_id>/date=D/targets.csv
    campaigns/<campaign_id>/date=D/targets.parquet
    campaigns/<campaign_id>/date=D/_manifest.json   rows, sha256 and bytes per file,
                                                     generated_at, code version, config hash

Only the **target** group is exported. The contact field of the channel (``email`` for email,
``phone`` for SMS; push needs none: the app knows its users) comes from the restricted zone
(``restricted/users_pii``, the latest record per customer up to D) at export time, and only
for customers whose record there still consents to the channel and has the contact: personal
data in clear exists in the restricted zone and in these files, nowhere else. A target row
left out (no consent any more, no contact) is counted in the manifest by reason.

Re-running D replaces its exports: each file is replaced whole (object writes are atomic),
and the manifest is written last, so a reader that checks the files against the manifest
never takes a half-written export for a complete one. ``mart_campaign_funnel.exported`` gets
the rows written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import date, datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from jobs.activation.campaigns_config import load_campaigns
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import UpstreamNotReadyError
from jobs.platform.lake import has_parquet, lake_storage, restricted_prefix, spark_uri
from jobs.platform.ops import warehouse_engine
from jobs.platform.provenance import code_version, files_hash
from jobs.platform.storage import Storage, open_storage
from jobs.platform.warehouse import query_frame, record_run

log = logging.getLogger(__name__)
CONTACT_FIELD = {"email": "email", "sms": "phone", "push": None}
CONSENT = {"email": "consent_email", "sms": "consent_sms", "push": "consent_push"}
COLUMNS = ("campaign_id", "send_date", "user_id", "product_id_1", "product_id_2", "product_id_3", "reason_code")
MANIFEST = "_manifest.json"


def exports_storage(config: PipelineConfig) -> Storage:
    return open_storage(config.storage.exports_root, config.storage.s3_endpoint_url, config.storage.s3_region)


def export_prefix(campaign_id: str, day: date) -> str:
    return f"campaigns/{campaign_id}/date={day.isoformat()}/"


def contacts_as_of(config: PipelineConfig, day: date, user_ids: list[int]) -> pd.DataFrame:
    """The latest restricted record (email, phone, consents) up to ``day`` of each given customer."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.platform.spark import get_spark

    columns = ["user_id", "email", "phone", "consent_email", "consent_sms", "consent_push"]
    lake = lake_storage(config)
    folder = restricted_prefix("users_pii", day).rsplit("extract_date=", 1)[0]
    if not user_ids or not has_parquet(lake, folder):
        return pd.DataFrame(columns=columns)
    spark = get_spark(config)
    wanted = spark.createDataFrame(pd.DataFrame({"user_id": user_ids}))
    latest = Window.partitionBy("user_id").orderBy(F.col("updated_at").desc(), F.col("extract_date").desc())
    records = (
        spark.read.parquet(spark_uri(lake, folder))
        .where(F.col("extract_date") <= F.lit(day))
        .join(F.broadcast(wanted), "user_id")
        .withColumn("n", F.row_number().over(latest))
        .where(F.col("n") == 1)
        .select(*columns)
    )
    return records.toPandas()


def export_file(frame: pd.DataFrame) -> dict[str, bytes]:
    """The two files of one export: CSV (UTF-8, header, empty for null) and Parquet."""
    csv = frame.to_csv(index=False, lineterminator="\n").encode()
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return {"targets.csv": csv, "targets.parquet": buffer.getvalue()}


def write_export(
    storage: Storage,
    campaign_id: str,
    day: date,
    channel: str,
    frame: pd.DataFrame,
    left_out: dict[str, int],
    provenance: dict[str, str],
) -> dict:
    """Write one campaign's export of ``day``: both files, then the manifest (returned)."""
    files = export_file(frame)
    prefix = export_prefix(campaign_id, day)
    for name, data in files.items():
        storage.write_bytes(prefix + name, data)
    manifest = {
        "campaign_id": campaign_id,
        "date": day.isoformat(),
        "channel": channel,
        "rows": len(frame),
        "left_out": left_out,
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()
        },
        **provenance,
    }
    storage.write_bytes(prefix + MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def export_campaigns(config: PipelineConfig, day: date) -> dict:
    """Write D's export of every campaign allocated on D (see the module docstring)."""
    schema = config.warehouse.schema_name
    settings = load_campaigns(
        config.activation.campaigns_file, config.customers.tags_file, config.customers.segments_file
    )
    channels = {c.id: c.channel for c in settings.campaigns}
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        funnel = conn.execute(
            sa.text(f"select campaign_id, channel from {schema}.mart_campaign_funnel where snapshot_date = :d"),
            {"d": day},
        ).fetchall()
        targets = query_frame(
            conn,
            f"select campaign_id, user_id, product_id_1, product_id_2, product_id_3, reason_code "
            f"from {schema}.mart_campaign_targets where snapshot_date = :d and arm = 'target' "
            "order by campaign_id, user_id",
            d=day,
        )
    if not funnel:
        raise UpstreamNotReadyError(f"no campaign allocation for {day}: run the allocate stage first")
    contacts = contacts_as_of(config, day, sorted(set(targets["user_id"].astype(int))))
    storage = exports_storage(config)
    provenance = {
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "code_version": code_version(),
        "config_hash": files_hash(config.activation.campaigns_file),
    }
    summary = {}
    for campaign_id, channel in funnel:
        rows = targets[targets["campaign_id"] == campaign_id]
        frame, left_out = _with_contacts(rows, contacts, channel or channels.get(campaign_id), day)
        write_export(storage, campaign_id, day, channel, frame, left_out, provenance)
        summary[campaign_id] = {"rows": len(frame), "left_out": left_out}
    exported = sum(entry["rows"] for entry in summary.values())
    with engine.begin() as conn:
        for campaign_id, entry in summary.items():
            conn.execute(
                sa.text(
                    f"update {schema}.mart_campaign_funnel set exported = :n "
                    "where snapshot_date = :d and campaign_id = :c"
                ),
                {"n": entry["rows"], "d": day, "c": campaign_id},
            )
        counts = {"input": len(targets), "output": exported, "quarantined": len(targets) - exported}
        record_run(conn, schema, day, "export", "campaign_exports", "success", counts, {"campaigns": summary})
    log.info("%s export: %d rows for %d campaigns", day, exported, len(summary))
    return {"snapshot_date": day.isoformat(), "campaigns": summary, "exported": exported}


def _with_contacts(
    rows: pd.DataFrame, contacts: pd.DataFrame, channel: str, day: date
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The export rows of one campaign: target rows whose restricted record consents to the
    channel and has its contact field; the others counted by reason."""
    merged = rows.merge(contacts, on="user_id", how="left")
    consent = merged[CONSENT[channel]].fillna(False).astype(bool)
    field = CONTACT_FIELD[channel]
    has_contact = merged[field].notna() & (merged[field].astype(str).str.strip() != "") if field else consent
    keep = consent & has_contact
    left_out = {"no_consent": int((~consent).sum()), "no_contact": int((consent & ~has_contact).sum())}
    kept = merged[keep.to_numpy()].assign(send_date=day.isoformat())
    columns = list(COLUMNS[:3]) + ([field] if field else []) + list(COLUMNS[3:])
    frame = kept[columns].reset_index(drop=True)
    for column in ("product_id_1", "product_id_2", "product_id_3"):
        frame[column] = frame[column].astype("Int64")
    return frame, left_out
