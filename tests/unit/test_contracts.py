"""Data contracts (ODCS v3) compile into checks; malformed contracts fail naming file and key;
the compiled checks run in Great Expectations on Spark and explain their failures."""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from jobs.ingest.contracts import (
    CONTRACTS_DIR,
    Check,
    Contract,
    ContractError,
    FreshnessRule,
    VolumeRule,
    load_contracts,
    parse_contract,
)

CONTRACT_FILES = sorted(CONTRACTS_DIR.glob("*.odcs.yaml"))

FULL = """
apiVersion: v3.1.0
kind: DataContract
id: test.orders
version: 2.1.0
schema:
  - name: orders
    quality:
      - name: line_unique
        metric: duplicateValues
        arguments: {properties: [order_id, line_no]}
        mustBe: 0
      - name: id_unique_again
        metric: duplicateValues
        arguments: {properties: [order_id]}
        mustBe: 0
        severity: warning
      - name: volume
        metric: rowCount
        mustBeGreaterThan: 9
        severity: warning
        customProperties:
          - property: relativeToRecentDays
            value: {days: 14, minRatio: 0.5, maxRatio: 3.0}
    properties:
      - name: order_id
        physicalType: LongType
        required: true
        unique: true
        logicalTypeOptions: {minimum: 1}
      - name: line_no
        physicalType: IntegerType
        logicalTypeOptions: {minimum: 1, maximum: 99}
      - name: status
        physicalType: StringType
        quality:
          - name: status_allowed
            metric: invalidValues
            arguments: {validValues: [paid, shipped]}
            mustBe: 0
          - metric: nullValues
            mustBeLessThan: 5
            unit: percent
            severity: warning
      - name: coupon_code
        quality:
          - name: coupon_format
            metric: invalidValues
            arguments: {pattern: "^[A-Z0-9]+$"}
            mustBeLessThan: 10
            unit: percent
            severity: Warning
            description: Coupons are upper-case codes.
      - name: updated_at
        physicalType: TimestampType
slaProperties:
  - property: latency
    value: 1
  - property: freshness
    value: 36
    unit: h
    element: orders.updated_at
"""


def write(tmp_path: Path, text: str, name: str = "orders.odcs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def edited(change) -> str:
    """FULL with ``change(doc)`` applied."""
    doc = yaml.safe_load(FULL)
    change(doc)
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def compiled(tmp_path) -> Contract:
    return parse_contract(write(tmp_path, FULL))


def by_name(contract: Contract) -> dict[str, Check]:
    return {check.name: check for check in contract.checks}


# --------------------------------------------------------------------------------------------
# The shipped contracts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=lambda p: p.name)
def test_every_shipped_contract_parses(path):
    contract = parse_contract(path)
    assert contract.id and contract.version and contract.checks
    assert path.name == f"{contract.dataset}.odcs.yaml"
    assert {c.severity for c in contract.checks} <= {"error", "warning"}
    assert all(c.column in contract.columns for c in contract.checks if c.column and "," not in c.column)


def test_the_shipped_contracts_cover_every_cleaned_dataset():
    contracts = load_contracts()
    assert set(contracts) == {"events", "users", "products", "orders", "order_items", "suppressions"}
    assert contracts["events"].volume == VolumeRule("volume_vs_recent_days", 7, 0.2, 5.0, 1, "warning")
    assert contracts["events"].freshness == FreshnessRule("event_at__freshness", "event_at", 2.0)
    order_line = by_name(contracts["order_items"])["order_line_unique"]
    assert order_line.kwargs == {"column_list": ["order_id", "line_no"]}


def test_the_suppressions_contract_checks_the_key_and_the_interface_values():
    from jobs.platform.interface import SUPPRESSION_CHANNELS, SUPPRESSION_REASONS

    contract = load_contracts()["suppressions"]
    checks = by_name(contract)
    assert checks["suppression_key_unique"].kwargs == {"column_list": ["user_id", "channel"]}
    assert checks["channel_allowed"].kwargs["value_set"] == list(SUPPRESSION_CHANNELS)
    assert checks["suppression_reason_allowed"].kwargs["value_set"] == list(SUPPRESSION_REASONS)
    for column in ("user_id", "channel", "suppression_reason", "suppressed_at", "updated_at"):
        assert checks[f"{column}__not_null"].severity == "error"
    assert contract.volume is None and contract.freshness is None  # a day without suppressions is normal


def test_every_shipped_check_is_a_great_expectations_expectation():
    import great_expectations.expectations as gxe

    from jobs.ingest.validate import _expectation_class

    for contract in load_contracts().values():
        for check in contract.checks:
            assert _expectation_class(gxe, check.expectation_type)


def test_no_contracts_in_a_directory_is_an_error(tmp_path):
    with pytest.raises(ContractError, match=str(tmp_path)):
        load_contracts(tmp_path)


# --------------------------------------------------------------------------------------------
# What compiles to what
# --------------------------------------------------------------------------------------------


def test_every_property_must_exist_and_has_its_physical_type(compiled):
    checks = by_name(compiled)
    assert compiled.columns == ["order_id", "line_no", "status", "coupon_code", "updated_at"]
    for column in compiled.columns:
        assert checks[f"{column}__exists"].expectation_type == "expect_column_to_exist"
    assert checks["order_id__type"].kwargs == {"column": "order_id", "type_": "LongType"}
    assert "coupon_code__type" not in checks  # no physicalType, no type check


def test_required_compiles_to_a_not_null_error(compiled):
    check = by_name(compiled)["order_id__not_null"]
    assert (check.expectation_type, check.kwargs, check.severity, check.column) == (
        "expect_column_values_to_not_be_null",
        {"column": "order_id"},
        "error",
        "order_id",
    )
    assert "line_no__not_null" not in by_name(compiled)


def test_unique_compiles_to_a_unique_check(compiled):
    check = by_name(compiled)["order_id__unique"]
    assert (check.expectation_type, check.kwargs) == ("expect_column_values_to_be_unique", {"column": "order_id"})


def test_logical_type_options_compile_to_between(compiled):
    checks = by_name(compiled)
    assert checks["order_id__range"].expectation_type == "expect_column_values_to_be_between"
    assert checks["order_id__range"].kwargs == {"column": "order_id", "min_value": 1, "max_value": None}
    assert checks["line_no__range"].kwargs == {"column": "line_no", "min_value": 1, "max_value": 99}


def test_invalid_values_with_valid_values_compile_to_in_set(compiled):
    check = by_name(compiled)["status_allowed"]
    assert check.expectation_type == "expect_column_values_to_be_in_set"
    assert check.kwargs == {"column": "status", "value_set": ["paid", "shipped"], "mostly": 1.0}
    assert check.severity == "error"  # the default


def test_invalid_values_with_a_pattern_compile_to_match_regex_with_mostly(compiled):
    check = by_name(compiled)["coupon_format"]
    assert check.expectation_type == "expect_column_values_to_match_regex"
    assert check.kwargs == {"column": "coupon_code", "regex": "^[A-Z0-9]+$", "mostly": pytest.approx(0.9)}
    assert check.severity == "warning"  # case-insensitive
    assert check.description == "Coupons are upper-case codes."


def test_null_values_compile_to_not_null_with_a_generated_name(compiled):
    check = by_name(compiled)["status__nullValues_1"]
    assert check.expectation_type == "expect_column_values_to_not_be_null"
    assert check.kwargs == {"column": "status", "mostly": pytest.approx(0.95)}
    assert check.severity == "warning"


def test_schema_duplicate_values_with_two_properties_compile_to_compound_unique(compiled):
    checks = by_name(compiled)
    compound = checks["line_unique"]
    assert compound.expectation_type == "expect_compound_columns_to_be_unique"
    assert compound.kwargs == {"column_list": ["order_id", "line_no"]}
    assert compound.column == "order_id,line_no"
    single = checks["id_unique_again"]
    assert (single.expectation_type, single.kwargs, single.severity) == (
        "expect_column_values_to_be_unique",
        {"column": "order_id"},
        "warning",
    )


def test_row_count_with_custom_properties_compiles_to_a_volume_rule(compiled):
    assert compiled.volume == VolumeRule(
        name="volume", days=14, min_ratio=0.5, max_ratio=3.0, minimum=10, severity="warning"
    )


def test_row_count_without_custom_properties_has_open_ratios(tmp_path):
    def change(doc):
        doc["schema"][0]["quality"] = [{"metric": "rowCount", "mustBeGreaterOrEqualTo": 3}]

    contract = parse_contract(write(tmp_path, edited(change)))
    assert contract.volume == VolumeRule("orders__rowCount_0", 7, 0.0, float("inf"), 3, "error")


def test_freshness_sla_compiles_to_a_freshness_rule_in_days(compiled):
    assert compiled.freshness == FreshnessRule("updated_at__freshness", "updated_at", 1.5, "warning")


def test_contract_identity_is_kept(compiled, tmp_path):
    assert (compiled.id, compiled.version, compiled.dataset) == ("test.orders", "2.1.0", "orders")
    assert compiled.path == tmp_path / "orders.odcs.yaml"


# --------------------------------------------------------------------------------------------
# Malformed contracts name the file and the key
# --------------------------------------------------------------------------------------------


def _drop(key):
    return lambda doc: doc.pop(key)


def _set(path, value):
    def change(doc):
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


MALFORMED = {
    "missing_id": (_drop("id"), ["'id'"]),
    "missing_schema": (_drop("schema"), ["'schema'"]),
    "not_odcs_v3": (_set(["apiVersion"], "v2.2.0"), ["ODCS v3"]),
    "unsupported_property_metric": (
        _set(["schema", 0, "properties", 2, "quality", 0, "metric"], "freshValues"),
        ["schema.orders.properties[2].status.quality[0]", "'freshValues'"],
    ),
    "unsupported_schema_metric": (
        _set(["schema", 0, "quality", 0, "metric"], "completeness"),
        ["schema.orders.quality[0]", "'completeness'"],
    ),
    "bad_property_severity": (
        _set(["schema", 0, "properties", 3, "quality", 0, "severity"], "fatal"),
        ["schema.orders.properties[3].coupon_code.quality[0]", "severity", "'fatal'"],
    ),
    "bad_schema_severity": (
        _set(["schema", 0, "quality", 2, "severity"], "info"),
        ["schema.orders.quality[2]", "severity", "'info'"],
    ),
    "freshness_element_not_a_property": (
        _set(["slaProperties", 1, "element"], "orders.shipped_at"),
        ["freshness", "'orders.shipped_at'"],
    ),
    "freshness_bad_unit": (_set(["slaProperties", 1, "unit"], "weeks"), ["freshness", "'weeks'"]),
    "nonzero_must_be": (
        _set(["schema", 0, "properties", 2, "quality", 0, "mustBe"], 3),
        ["schema.orders.properties[2].status.quality[0]", "mustBe"],
    ),
    "percent_threshold_without_unit": (
        _set(["schema", 0, "properties", 3, "quality", 0, "unit"], "rows"),
        ["coupon_code.quality[0]", "mustBeLessThan", "percent"],
    ),
    "no_threshold": (
        lambda doc: doc["schema"][0]["properties"][2]["quality"][0].pop("mustBe"),
        ["status.quality[0]", "threshold"],
    ),
    "duplicate_values_without_properties": (
        lambda doc: doc["schema"][0]["quality"][0].pop("arguments"),
        ["schema.orders.quality[0]", "arguments.properties"],
    ),
    "property_without_name": (
        lambda doc: doc["schema"][0]["properties"][1].pop("name"),
        ["schema.orders.properties[1]", "name"],
    ),
    "schema_object_without_name": (
        lambda doc: doc["schema"][0].pop("name"),
        ["schema[0]", "name"],
    ),
    "freshness_without_value": (
        lambda doc: doc["slaProperties"][1].pop("value"),
        ["freshness", "value"],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_contract_names_the_file_and_the_key(tmp_path, case):
    change, fragments = MALFORMED[case]
    path = write(tmp_path, edited(change), name="broken.odcs.yaml")
    with pytest.raises(ContractError) as caught:
        parse_contract(path)
    message = str(caught.value)
    assert "broken.odcs.yaml" in message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message


def test_invalid_yaml_is_a_contract_error_naming_the_file(tmp_path):
    path = write(tmp_path, "apiVersion: v3.1.0\nschema: [unclosed\n", name="bad.odcs.yaml")
    with pytest.raises(ContractError, match="bad.odcs.yaml"):
        parse_contract(path)


def test_a_malformed_contract_fails_load_contracts(tmp_path):
    write(tmp_path, FULL)
    write(tmp_path, edited(_drop("version")), name="users.odcs.yaml")
    with pytest.raises(ContractError, match="users.odcs.yaml.*'version'"):
        load_contracts(tmp_path)


# --------------------------------------------------------------------------------------------
# jobs.ingest.validate: run-time bounds, suites, failures explained
# --------------------------------------------------------------------------------------------

WINDOW_END = datetime(2026, 10, 10, 16, 0, tzinfo=timezone.utc)


def test_volume_bounds_are_the_median_of_history_times_the_ratios(compiled):
    from jobs.ingest.validate import runtime_checks

    (volume, _) = runtime_checks(compiled, [100, 300, 200, 1000], WINDOW_END)
    # median 250: [0.5 x 250, 3 x 250]
    assert volume.name == "volume"
    assert volume.expectation_type == "expect_table_row_count_to_be_between"
    assert volume.kwargs == {"min_value": 125, "max_value": 750}
    assert volume.severity == "warning"


def test_volume_bounds_never_go_below_the_contract_minimum_and_stay_inclusive(compiled):
    from jobs.ingest.validate import runtime_checks

    (volume, _) = runtime_checks(compiled, [4, 6], WINDOW_END)
    assert volume.kwargs["min_value"] == 10  # mustBeGreaterThan 9 beats 0.5 x 5
    assert volume.kwargs["max_value"] == 15  # 3 x 5, not 16
    (odd, _) = runtime_checks(compiled, [3, 4], WINDOW_END)
    assert odd.kwargs["max_value"] == 11  # 3 x 3.5 = 10.5, rounded up


def test_without_history_only_the_minimum_applies(compiled):
    from jobs.ingest.validate import runtime_checks

    (volume, _) = runtime_checks(compiled, [], WINDOW_END)
    assert volume.kwargs == {"min_value": 10, "max_value": None}


def test_freshness_min_value_is_the_window_end_minus_the_max_age_in_naive_utc(compiled):
    from jobs.ingest.validate import runtime_checks

    shanghai_end = WINDOW_END.astimezone(timezone(timedelta(hours=8)))
    (_, fresh) = runtime_checks(compiled, [], shanghai_end)
    assert fresh.expectation_type == "expect_column_max_to_be_between"
    assert fresh.kwargs == {"column": "updated_at", "min_value": datetime(2026, 10, 9, 4, 0)}  # 36 h earlier
    assert (fresh.name, fresh.column, fresh.severity) == ("updated_at__freshness", "updated_at", "warning")


def test_a_contract_without_volume_or_freshness_has_no_runtime_checks(tmp_path):
    def change(doc):
        doc["schema"][0].pop("quality")
        doc.pop("slaProperties")

    from jobs.ingest.validate import runtime_checks

    assert runtime_checks(parse_contract(write(tmp_path, edited(change))), [5], WINDOW_END) == []


def test_build_suite_carries_name_severity_and_contract_into_every_expectation(compiled):
    from jobs.ingest.validate import build_suite, runtime_checks

    checks = compiled.checks + runtime_checks(compiled, [100], WINDOW_END)
    suite = build_suite(compiled, checks)
    assert suite.name == "orders_suite"
    assert len(suite.expectations) == len(checks)
    metas = {e.meta["check_name"]: e for e in suite.expectations}
    assert metas["status_allowed"].meta == {
        "check_name": "status_allowed",
        "severity": "error",
        "contract": "test.orders",
    }
    assert metas["coupon_format"].severity.value == "warning"
    assert metas["status_allowed"].severity.value == "critical"
    assert metas["volume"].max_value == 300


SMALL = """
apiVersion: v3.1.0
kind: DataContract
id: test.small_orders
version: 1.0.0
schema:
  - name: small_orders
    quality:
      - metric: rowCount
        mustBeGreaterThan: 0
        severity: warning
        customProperties:
          - property: relativeToRecentDays
            value: {days: 7, minRatio: 0.2, maxRatio: 5.0}
    properties:
      - name: order_id
        physicalType: LongType
        required: true
        unique: true
      - name: status
        physicalType: StringType
        quality:
          - name: status_allowed
            metric: invalidValues
            arguments: {validValues: [paid, shipped]}
            mustBe: 0
      - name: total_amount
        physicalType: DecimalType
        logicalTypeOptions: {minimum: 0}
      - name: updated_at
        physicalType: TimestampType
        required: true
slaProperties:
  - property: freshness
    value: 1
    unit: d
    element: small_orders.updated_at
"""


@pytest.fixture(scope="module")
def gx_result(spark, tmp_path_factory):
    """One GX run of SMALL on a 3-row frame with one bad status and stale data."""
    from decimal import Decimal

    from jobs.ingest.validate import _Validator, build_suite, runtime_checks, summarise

    root = tmp_path_factory.mktemp("gx")
    contract = parse_contract(write(root, SMALL, name="small_orders.odcs.yaml"))
    frame = spark.createDataFrame(
        [
            (1, "paid", Decimal("10.00"), datetime(2026, 10, 8, 1, 0)),
            (2, "lost", Decimal("20.00"), datetime(2026, 10, 8, 2, 0)),
            (3, "shipped", Decimal("30.00"), datetime(2026, 10, 8, 3, 0)),
        ],
        "order_id long, status string, total_amount decimal(14,2), updated_at timestamp",
    )
    checks = contract.checks + runtime_checks(contract, [100, 120], WINDOW_END)
    validator = _Validator(root / "data_docs", build_docs=False)
    validation = validator.run(contract.dataset, build_suite(contract, checks), frame, date(2026, 10, 10))
    return contract, {row["check_name"]: row for row in summarise(contract, validation)}


def test_an_error_level_violation_yields_a_failing_row_with_counts(gx_result):
    _, rows = gx_result
    failing = rows["status_allowed"]
    assert failing["is_success"] is False
    assert failing["severity"] == "error"
    assert failing["column_name"] == "status"
    assert (failing["unexpected_count"], failing["element_count"]) == (1, 3)
    assert failing["partial_unexpected_list"] == ["lost"]
    errors = [name for name, row in rows.items() if not row["is_success"] and row["severity"] == "error"]
    assert errors == ["status_allowed"]


def test_describe_failure_names_contract_check_column_and_count(gx_result):
    from jobs.ingest.validate import describe_failure

    contract, rows = gx_result
    text = describe_failure(contract, rows["status_allowed"])
    assert "test.small_orders" in text
    assert "small_orders.odcs.yaml" in text
    assert "status_allowed" in text
    assert "column status" in text
    assert "1 of 3 rows failed" in text
    assert "lost" in text


def test_runtime_checks_fail_as_warnings_on_low_volume_and_stale_data(gx_result):
    from jobs.ingest.validate import describe_failure

    contract, rows = gx_result
    volume = rows["small_orders__rowCount_0"]
    assert (volume["is_success"], volume["severity"]) == (False, "warning")  # 3 rows < 0.2 x median 110 = 22
    fresh = rows["updated_at__freshness"]
    assert (fresh["is_success"], fresh["severity"]) == (False, "warning")  # newest 2026-10-08 03:00 < 2026-10-09 16:00
    assert "updated_at__freshness" in describe_failure(contract, fresh)
    assert all(rows[name]["is_success"] for name in ("order_id__unique", "order_id__type", "total_amount__range"))
