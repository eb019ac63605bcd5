"""Retention: the nightly run deletes lake partitions older than each zone's limit.

- ``raw`` (events as received, source extracts without personal data): ``retention.raw_days``;
  never less than collect reads back (the lookback plus the late-file scan);
- ``quarantine`` (rejected rows and files): ``retention.quarantine_days``;
- ``restricted`` (personal data in clear: the users extracts and ``users_pii``):
  ``retention.restricted_days``.

A partition is a ``batch_date=D`` or ``extract_date=D`` folder; it goes whole when D is older
than the run's date minus the limit. The clean zone and the warehouse are kept: published
data is read from them. What was deleted is recorded in ``ops_pipeline_runs`` (stage
``retention``).
"""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta

from jobs.platform.config import PipelineConfig
from jobs.platform.lake import lake_storage
from jobs.platform.ops import record_stage

log = logging.getLogger(__name__)
ZONES = {"raw": ("raw/",), "quarantine": ("quarantine/",), "restricted": ("restricted/",)}
_PARTITION = re.compile(r"^(.*?/(?:batch|extract)_date=(\d{4}-\d{2}-\d{2}))/")


def expired_partitions(keys: list[str], cutoff: date) -> dict[str, int]:
    """Partition folders among ``keys`` whose date is before ``cutoff``, with their file counts."""
    expired: dict[str, int] = {}
    for key in keys:
        match = _PARTITION.match(key)
        if match and date.fromisoformat(match.group(2)) < cutoff:
            expired[match.group(1) + "/"] = expired.get(match.group(1) + "/", 0) + 1
    return expired


def enforce_retention(config: PipelineConfig, logical_date: date) -> dict:
    """Delete the expired partitions of the raw, quarantine and restricted zones."""
    lake = lake_storage(config)
    limits = {
        "raw": config.retention.raw_days,
        "quarantine": config.retention.quarantine_days,
        "restricted": config.retention.restricted_days,
    }
    deleted: dict[str, dict] = {}
    for zone, prefixes in ZONES.items():
        cutoff = logical_date - timedelta(days=limits[zone])
        keys = [info.key for prefix in prefixes for info in lake.list(prefix)]
        expired = expired_partitions(keys, cutoff)
        for partition in expired:
            lake.delete_prefix(partition)
        deleted[zone] = {"kept_from": cutoff.isoformat(), "partitions": len(expired), "files": sum(expired.values())}
        if expired:
            log.info("retention %s: deleted %d partitions before %s", zone, len(expired), cutoff)
    files = sum(zone["files"] for zone in deleted.values())
    record_stage(
        config,
        {
            "stage": "retention",
            "dataset": "lake",
            "logical_date": logical_date.isoformat(),
            "counts": {"input": files, "output": files},
            "deleted": deleted,
        },
    )
    return {"logical_date": logical_date.isoformat(), "deleted": deleted}
