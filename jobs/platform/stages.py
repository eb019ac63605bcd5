"""The stages in pipeline order, each named by the function that runs it.

A stage is a function of (config, logical date) that returns a small summary. Airflow's DAG
tasks and ``marketing run`` both look the function up here by its stage name; the registry
holds ``"module:function"`` strings, so a reader follows a name straight to its code and a DAG
file imports no stage code at parse time.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError
from jobs.platform.locks import warehouse_lock
from jobs.platform.spark import release_cached

log = logging.getLogger(__name__)

StageFunction = Callable[[PipelineConfig, date], dict]

# The nightly DAG (marketing_nightly). Order matters: events are checked against the products
# cleaned for the same date.
STAGES: dict[str, str] = {
    "collect_events": "jobs.ingest.collect:collect_events",
    "collect_sources": "jobs.ingest.collect:collect_sources",
    "clean_sources": "jobs.ingest.clean_sources:clean_sources",
    "clean_events": "jobs.ingest.clean_events:clean_events",
    "validate": "jobs.ingest.validate:validate",
    "load": "jobs.ingest.load:load_warehouse",
    "retention": "jobs.ingest.retention:enforce_retention",
}
# Built on published data by a DAG of their own (marketing_customers, on the warehouse assets);
# the profile (tags) joins the date's segments and scores.
CUSTOMER_STAGES: dict[str, str] = {
    "segments": "jobs.customers.segments:build_segments",
    "scores": "jobs.customers.scores:build_scores",
    "tags": "jobs.customers.tags:build_tags",
}
# The recommender (marketing_recommender, after the customers DAG): evaluation groups by the
# date's lifecycle stages.
MODEL_STAGES: dict[str, str] = {"recommender": "jobs.recommender.stage:build_recommender"}
# Activation (marketing_campaigns, after the customers and recommender DAGs): campaign lists on
# the date's profile and recommendations.
CAMPAIGN_STAGES: dict[str, str] = {
    "associations": "jobs.activation.associations:build_associations",
    "allocate": "jobs.activation.allocate:allocate_campaigns",
    "export": "jobs.activation.export:export_campaigns",
    "measure": "jobs.activation.measure:measure_campaigns",
    "kpis": "jobs.activation.kpis:build_kpis",
}
# The nightly report (the campaigns DAG's last task): everything above, for people.
REPORT_STAGES: dict[str, str] = {"report": "jobs.reporting.nightly:build_report"}
ALL_STAGES = {**STAGES, **CUSTOMER_STAGES, **MODEL_STAGES, **CAMPAIGN_STAGES, **REPORT_STAGES}
STAGE_GROUPS = {
    "collect": ("collect_events", "collect_sources"),
    "clean": ("clean_sources", "clean_events"),
    "nightly": tuple(STAGES),
    "customers": tuple(CUSTOMER_STAGES),
    "models": tuple(MODEL_STAGES),
    "campaigns": tuple(CAMPAIGN_STAGES),
    "reports": tuple(REPORT_STAGES),
}


def stage_function(name: str) -> StageFunction:
    """The function that runs stage ``name`` (imported on first use)."""
    if name not in ALL_STAGES:
        raise ConfigError(f"unknown stage {name!r}; choose from: {', '.join(ALL_STAGES)}")
    module, function = ALL_STAGES[name].split(":")
    return getattr(importlib.import_module(module), function)


def resolve_stages(names: list[str] | None) -> list[str]:
    """Expand group names (collect, clean, nightly, customers, models, campaigns) and check every name; keep
    pipeline order. No names means the nightly stages."""
    if not names:
        return list(STAGES)
    wanted: set[str] = set()
    for name in names:
        if name in STAGE_GROUPS:
            wanted.update(STAGE_GROUPS[name])
        elif name in ALL_STAGES:
            wanted.add(name)
        else:
            choices = ", ".join([*ALL_STAGES, *STAGE_GROUPS])
            raise ConfigError(f"unknown stage {name!r}; choose from: {choices}")
    return [stage for stage in ALL_STAGES if stage in wanted]


def run_stage(config: PipelineConfig, name: str, day: date) -> dict:
    """Run one stage for a date under the warehouse lock, and record in ``ops_stage_runs`` when
    it started, how long it took, its peak memory and how it ended (``success``, ``skipped`` or
    ``failed``)."""
    from jobs.platform.ops import PeakMemory, record_stage_run

    function = stage_function(name)
    started, clock = datetime.now(UTC), time.monotonic()
    log.info("%s %s: starting", day, name)
    with PeakMemory() as memory:
        try:
            with warehouse_lock(config, f"{name} {day}"):
                summary = function(config, day)
        except BaseException as exc:
            record_stage_run(
                config, day, name, "failed", started, datetime.now(UTC), f"{type(exc).__name__}: {exc}", memory.stop()
            )
            raise
        finally:
            release_cached()  # nothing a stage cached outlives it (one process may run many)
    status = summary.get("status", "success") if isinstance(summary, dict) else "success"
    record_stage_run(config, day, name, status, started, datetime.now(UTC), peak_rss_bytes=memory.peak)
    log.info("%s %s: %s in %.1fs, peak %.0f MiB", day, name, status, time.monotonic() - clock, memory.peak / 2**20)
    return summary


def run_pipeline(config: PipelineConfig, day: date, stages: list[str] | None = None) -> dict[str, dict]:
    """Run the selected stages (all by default) for one logical date; return their summaries."""
    return {stage: run_stage(config, stage, day) for stage in resolve_stages(stages)}
