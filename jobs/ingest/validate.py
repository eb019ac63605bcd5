"""Validate (write-audit-publish): run the contracts' checks on D's clean data with Great
Expectations before anything is published.

For each contract, the clean Spark DataFrame of D is validated by a suite generated from the
contract (:mod:`jobs.ingest.contracts`), with run-time bounds for volume (relative to the median of
recent days in ``ops_pipeline_runs``) and freshness (relative to the end of D). Results are
saved as JSON and as Data Docs (HTML) under ``reports_root``, every check is recorded in
``ops_data_quality`` (replacing the date's rows of these contracts only: collect records its own
checks there too), and an error-level failure raises :class:`ContractViolation` naming the
contract, the check, the column and the failing count. Warnings are recorded and shown only.

An empty day (no clean rows, e.g. no landing files and no changed source rows) validates like
any other: the volume check warns (it never fails with bounds that contradict each other; after
empty days, whose median is 0, only the contract's minimum applies).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from pyspark.sql import DataFrame

from jobs.ingest.contracts import Check, Contract, load_contracts
from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ContractViolation, UpstreamNotReadyError
from jobs.platform.lake import (
    clean_events_prefix,
    clean_fingerprint,
    clean_source_prefix,
    has_parquet,
    lake_storage,
    reports_storage,
    run_record_key,
    spark_uri,
    window_for,
    write_json,
)
from jobs.platform.ops import record_quality, warehouse_engine
from jobs.platform.storage import LocalStorage

log = logging.getLogger(__name__)
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
SITE = "marketing_quality"
GX_SEVERITY = {"error": "critical", "warning": "warning"}


def dataset_frame(spark, config: PipelineConfig, dataset: str, day: date) -> DataFrame | None:
    lake = lake_storage(config)
    prefix = clean_events_prefix(day) if dataset == "events" else clean_source_prefix(dataset, day)
    if not has_parquet(lake, prefix):
        return None
    return spark.read.parquet(spark_uri(lake, prefix))


def volume_history(config: PipelineConfig, dataset: str, day: date, days: int) -> list[int]:
    """Clean row counts of the dataset on the previous ``days`` successful runs.

    Days whose source extract was a full reload are left out: a first load holds the whole
    history and would make every normal day after it look like a collapse in volume.
    """
    schema = config.warehouse.schema_name
    engine = warehouse_engine(config)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"select r.rows_out from {schema}.ops_pipeline_runs r "
                "where r.stage = 'clean' and r.dataset = :ds and r.status = 'success' "
                "and r.logical_date < :d and r.logical_date >= :first and r.rows_out is not null "
                f"and not exists (select 1 from {schema}.ops_source_watermarks w "
                "where w.table_name = r.dataset and w.logical_date = r.logical_date and w.is_full_reload)"
            ),
            {"ds": dataset, "d": day, "first": day - timedelta(days=days)},
        ).scalars()
        history = [int(value) for value in rows]
    return history


def runtime_checks(contract: Contract, history: list[int], window_end: datetime) -> list[Check]:
    """Volume and freshness checks whose bounds depend on the run (recent days, date D)."""
    checks = []
    if contract.volume is not None:
        rule = contract.volume
        low, high = rule.minimum, None
        median = statistics.median(history) if history else 0
        # Only a history with volume sets relative bounds: after empty days (median 0) the
        # count is held to the contract's minimum only (a 0 upper bound would be below it).
        if median > 0:
            low = max(low, int(median * rule.min_ratio))
            high = math.ceil(median * rule.max_ratio) if rule.max_ratio != float("inf") else None
            high = max(high, low) if high is not None else None
        checks.append(
            Check(
                rule.name,
                "expect_table_row_count_to_be_between",
                {"min_value": low, "max_value": high},
                rule.severity,
                description=f"row count vs median of {len(history)} recent days",
            )
        )
    if contract.freshness is not None:
        rule = contract.freshness
        newest_allowed_age = window_end - timedelta(days=rule.max_age_days)
        checks.append(
            Check(
                rule.name,
                "expect_column_max_to_be_between",
                {
                    "column": rule.column,
                    "min_value": newest_allowed_age.astimezone(timezone.utc).replace(tzinfo=None),
                },
                rule.severity,
                rule.column,
                f"newest {rule.column} at most {rule.max_age_days:g} days before the end of the date",
            )
        )
    return checks


def build_suite(contract: Contract, checks: list[Check]):
    """A Great Expectations suite from compiled checks; each carries its name and severity."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations = []
    for check in checks:
        cls = _expectation_class(gxe, check.expectation_type)
        kwargs = {k: v for k, v in check.kwargs.items() if v is not None or k in ("min_value", "max_value")}
        expectations.append(
            cls(
                **kwargs,
                severity=GX_SEVERITY[check.severity],
                meta={
                    "check_name": check.name,
                    "severity": check.severity,
                    "contract": contract.id,
                },
                notes=f"{check.severity} | {contract.id} v{contract.version} | {check.name}"
                + (f" | {check.description}" if check.description else ""),
            )
        )
    return gx.ExpectationSuite(
        name=f"{contract.dataset}_suite", expectations=expectations, meta={"contract": contract.id}
    )


def _expectation_class(module, snake: str):
    name = "".join(part.capitalize() for part in snake.split("_"))
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise ValueError(f"Great Expectations has no expectation {snake}") from exc


class _Validator:
    """A GX context with a Data Docs site in a local directory.

    A file-backed context (under ``<docs_dir>/../gx``) keeps earlier validation results, so the
    Data Docs index lists every night, not just the latest; GX rebuilds pages only for results
    in its store.
    """

    def __init__(self, docs_dir: Path, build_docs: bool = True):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.build_docs = build_docs
        self.context = gx.get_context(mode="file", project_root_dir=str(docs_dir.parent / "gx_project"))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        sites = self.context.list_data_docs_sites()
        for site in [name for name in sites if name != SITE]:
            self.context.delete_data_docs_site(site)
        if SITE not in sites:
            self.context.add_data_docs_site(
                site_name=SITE,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    "show_how_to_buttons": False,
                },
            )
        self.source = self.context.data_sources.add_or_update_spark(name="lake")

    def run(self, dataset: str, suite, frame: DataFrame, day: date, samples: int = 10):
        """Run the suite on the frame; ``samples`` failing values are kept per check (0 for a
        contract with restricted columns: then no row value reaches results or Data Docs)."""
        from great_expectations.checkpoint import UpdateDataDocsAction

        try:
            asset = self.source.get_asset(dataset)
        except LookupError:
            asset = self.source.add_dataframe_asset(name=dataset)
        try:
            batch = asset.get_batch_definition(f"{dataset}_batch")
        except (KeyError, LookupError):
            batch = asset.add_batch_definition_whole_dataframe(f"{dataset}_batch")
        suite = self.context.suites.add_or_update(suite)
        definition = self.context.validation_definitions.add_or_update(
            self.gx.ValidationDefinition(name=f"{dataset}_{day:%Y%m%d}", data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add_or_update(
            self.gx.Checkpoint(
                name=f"{dataset}_checkpoint",
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="docs", site_names=[SITE])] if self.build_docs else [],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": samples},
            )
        )
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=f"{dataset}-{day.isoformat()}", run_time=datetime.now(timezone.utc))
        result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
        ((_, validation),) = result.run_results.items()
        return validation


def _exception(result) -> str | None:
    """GX reports an exception in one of two shapes; an erroring check counts as failed."""
    info = result.exception_info or {}
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    return "; ".join(m for m in messages if m) or None


def _observed(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def summarise(contract: Contract, validation) -> list[dict]:
    """One row per check: name, expectation, column, severity, success and counts."""
    rows = []
    for result in validation.results:
        config = result.expectation_config
        details = result.result or {}
        exception = _exception(result)
        rows.append(
            {
                "check_name": config.meta.get("check_name", config.type),
                "expectation_type": config.type,
                "column_name": config.kwargs.get("column") or ",".join(config.kwargs.get("column_list") or []) or None,
                "severity": config.meta.get("severity", "error"),
                "is_success": bool(result.success),
                "element_count": details.get("element_count"),
                "unexpected_count": details.get("unexpected_count"),
                "observed_value": _observed(details.get("observed_value") if exception is None else exception),
                "partial_unexpected_list": []
                if contract.restricted_columns  # personal data: counts only, never values
                else [str(v) for v in (details.get("partial_unexpected_list") or [])][:10],
            }
        )
    return sorted(rows, key=lambda row: row["check_name"])


def describe_failure(contract: Contract, row: dict) -> str:
    where = f" on column {row['column_name']}" if row["column_name"] else ""
    if row["unexpected_count"] is not None:
        count = f"{row['unexpected_count']} of {row['element_count']} rows failed"
        sample = f" (e.g. {', '.join(row['partial_unexpected_list'][:3])})" if row["partial_unexpected_list"] else ""
    else:
        count, sample = f"observed {row['observed_value']}", ""
    return (
        f"contract {contract.id} v{contract.version} ({contract.path.name}): check {row['check_name']} "
        f"[{row['expectation_type']}]{where}: {count}{sample}"
    )


def validate(config: PipelineConfig, logical_date: date) -> dict:
    """Validate every contracted dataset of D; raise ContractViolation on error-level failures."""
    from jobs.platform.spark import get_spark

    spark = get_spark(config)
    contracts = load_contracts(Path(config.validation.contracts_dir))
    reports = reports_storage(config)
    window = window_for(logical_date, config.tz)
    local_docs = isinstance(reports, LocalStorage)
    docs_dir = Path(reports.uri("data_docs")) if local_docs else Path(tempfile.mkdtemp(prefix="data-docs-"))
    validator = _Validator(docs_dir, build_docs=config.validation.build_data_docs)
    validated_at = datetime.now(timezone.utc)
    fingerprint = clean_fingerprint(lake_storage(config), logical_date)  # of exactly what is validated

    summary: dict[str, dict] = {}
    failures: list[str] = []
    warnings: list[str] = []
    quality_rows: list[dict] = []
    if not config.source.events:  # an orders-only shop: no behaviour data to hold to a contract
        contracts = {name: contract for name, contract in contracts.items() if name != "events"}
        summary["events"] = {"skipped": "no behaviour data (source.events is false: an orders-only shop)"}
    for dataset, contract in contracts.items():
        frame = dataset_frame(spark, config, dataset, logical_date)
        if frame is None:
            raise UpstreamNotReadyError(f"no clean {dataset} for {logical_date}: run the clean stage first")
        rule_days = contract.volume.days if contract.volume else config.validation.volume_history_days
        checks = contract.checks + runtime_checks(
            contract, volume_history(config, dataset, logical_date, rule_days), window.end
        )
        frame = frame.persist()  # GX makes several passes; read the Parquet once
        samples = 0 if contract.restricted_columns else 10
        validation = validator.run(dataset, build_suite(contract, checks), frame, logical_date, samples)
        frame.unpersist()
        rows = summarise(contract, validation)
        reports.write_bytes(
            f"quality/{logical_date.isoformat()}/{dataset}.json",
            json.dumps(validation.to_json_dict(), indent=2, default=str).encode(),
        )
        for row in rows:
            if not row["is_success"]:
                (failures if row["severity"] == "error" else warnings).append(describe_failure(contract, row))
            quality_rows.append(
                {
                    "logical_date": logical_date,
                    "dataset": dataset,
                    "contract_id": contract.id,
                    "contract_version": contract.version,
                    "validated_at": validated_at,
                    **{k: v for k, v in row.items() if k != "partial_unexpected_list"},
                }
            )
        summary[dataset] = {
            "contract": contract.id,
            "checks": len(rows),
            "failed_errors": sum(1 for r in rows if not r["is_success"] and r["severity"] == "error"),
            "failed_warnings": sum(1 for r in rows if not r["is_success"] and r["severity"] == "warning"),
        }

    # each checkpoint's UpdateDataDocsAction rendered its result and the index: no full rebuild,
    # which would render every night's results again and grow with the history
    if config.validation.build_data_docs and not local_docs:
        _upload_dir(docs_dir, reports, "data_docs")

    record_quality(config, logical_date, quality_rows, [contract.id for contract in contracts.values()])
    record = {
        "stage": "validate",
        "dataset": "all",
        "logical_date": logical_date.isoformat(),
        "passed": not failures,
        "clean_fingerprint": fingerprint,
        "datasets": summary,
        "errors": failures,
        "warnings": warnings,
        "data_docs": reports.uri("data_docs/index.html"),
    }
    write_json(reports, f"quality/{logical_date.isoformat()}/summary.json", record)
    write_json(lake_storage(config), run_record_key("validate", "all", logical_date), record)
    _record_validation_run(config, logical_date, record, len(quality_rows))
    for message in warnings:
        log.warning("data-quality warning %s: %s", logical_date, message)
    if failures:
        raise ContractViolation(
            f"{logical_date}: {len(failures)} error-level check(s) failed, nothing published; first: {failures[0]}"
            + (f" (+{len(failures) - 1} more, see {record['data_docs']})" if len(failures) > 1 else "")
        )
    return {k: v for k, v in record.items() if k != "stage"}


def _record_validation_run(config: PipelineConfig, day: date, record: dict, checks: int) -> None:
    from jobs.platform.warehouse import record_run

    engine = warehouse_engine(config)
    with engine.begin() as conn:
        record_run(
            conn,
            config.warehouse.schema_name,
            day,
            "validate",
            "all",
            "success" if record["passed"] else "failed",
            {"input": checks, "output": checks - len(record["errors"]) - len(record["warnings"])},
            {
                "errors": record["errors"],
                "warnings": record["warnings"],
                "datasets": record["datasets"],
            },
        )


def _upload_dir(local: Path, storage, prefix: str) -> None:
    for path in local.rglob("*"):
        if path.is_file():
            storage.write_bytes(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())
