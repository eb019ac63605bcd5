"""The nightly stages in order, as plain functions of (config, logical date).

Airflow's DAG calls the same functions task by task; ``marketing run`` calls them here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date

from jobs.config import PipelineConfig

log = logging.getLogger(__name__)


def _collect_events(config: PipelineConfig, day: date) -> dict:
    from jobs.collect import collect_events

    return collect_events(config, day)


def _collect_sources(config: PipelineConfig, day: date) -> dict:
    from jobs.collect import collect_sources

    return collect_sources(config, day)


def _clean_sources(config: PipelineConfig, day: date) -> dict:
    from jobs.clean_sources import clean_sources

    return clean_sources(config, day)


def _clean_events(config: PipelineConfig, day: date) -> dict:
    from jobs.clean_events import clean_events

    return clean_events(config, day)


def _validate(config: PipelineConfig, day: date) -> dict:
    from jobs.validate import validate

    return validate(config, day)


def _load(config: PipelineConfig, day: date) -> dict:
    from jobs.load import load_warehouse

    return load_warehouse(config, day)


# Order matters: events are checked against the products cleaned for the same date.
STAGES: dict[str, Callable[[PipelineConfig, date], dict]] = {
    "collect_events": _collect_events,
    "collect_sources": _collect_sources,
    "clean_sources": _clean_sources,
    "clean_events": _clean_events,
    "validate": _validate,
    "load": _load,
}
def _segments(config: PipelineConfig, day: date) -> dict:
    from jobs.segments import build_segments

    return build_segments(config, day)


# Built on published data by a DAG of their own (scheduled on the warehouse assets).
def _scores(config: PipelineConfig, day: date) -> dict:
    from jobs.scores import build_scores

    return build_scores(config, day)


def _tags(config: PipelineConfig, day: date) -> dict:
    from jobs.tags import build_tags

    return build_tags(config, day)


def _recommender(config: PipelineConfig, day: date) -> dict:
    from jobs.recommend import build_recommender

    return build_recommender(config, day)


CUSTOMER_STAGES: dict[str, Callable[[PipelineConfig, date], dict]] = {
    "segments": _segments,
    "scores": _scores,
    "tags": _tags,  # the profile joins the date's segments and scores
}
# The recommender (its own DAG, after the customers DAG): evaluation groups by the date's lifecycle
# stages, so it comes after the customer stages.
MODEL_STAGES: dict[str, Callable[[PipelineConfig, date], dict]] = {"recommender": _recommender}
ALL_STAGES = {**STAGES, **CUSTOMER_STAGES, **MODEL_STAGES}
STAGE_GROUPS = {
    "collect": ("collect_events", "collect_sources"),
    "clean": ("clean_sources", "clean_events"),
    "nightly": tuple(STAGES),
    "customers": tuple(CUSTOMER_STAGES),
    "models": tuple(MODEL_STAGES),
}


def resolve_stages(names: list[str] | None) -> list[str]:
    """Expand group names (collect, clean, nightly, customers, models) and check every name; keep
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
            raise ValueError(f"unknown stage {name!r}; choose from: {choices}")
    return [stage for stage in ALL_STAGES if stage in wanted]


def run_pipeline(config: PipelineConfig, day: date, stages: list[str] | None = None) -> dict[str, dict]:
    """Run the selected stages (all by default) for one logical date; return their summaries."""
    results = {}
    for stage in resolve_stages(stages):
        started = time.monotonic()
        log.info("%s %s: starting", day, stage)
        results[stage] = ALL_STAGES[stage](config, day)
        log.info("%s %s: done in %.1fs", day, stage, time.monotonic() - started)
    return results
