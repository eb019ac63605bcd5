"""Data contracts (Open Data Contract Standard v3) compiled into executable checks.

The contracts in ``data_contracts/*.odcs.yaml`` are the single source of truth: this module
turns each into a list of :class:`Check` (an expectation type, its keyword arguments and a
severity), which :mod:`jobs.ingest.validate` runs with Great Expectations. Nothing is written twice.

What compiles to what:

- property exists with ``physicalType``     -> expect_column_to_exist, expect_column_values_to_be_of_type
- ``required: true``                          -> expect_column_values_to_not_be_null
- ``unique: true``                            -> expect_column_values_to_be_unique
- ``logicalTypeOptions.minimum/maximum``      -> expect_column_values_to_be_between
- quality ``invalidValues`` + ``validValues`` -> expect_column_values_to_be_in_set
- quality ``invalidValues`` + ``pattern``     -> expect_column_values_to_match_regex
- quality ``nullValues``                      -> expect_column_values_to_not_be_null
- schema quality ``duplicateValues``          -> expect_compound_columns_to_be_unique
- schema quality ``rowCount`` (+ customProperties relativeToRecentDays)
                                              -> expect_table_row_count_to_be_between
- ``slaProperties`` freshness                 -> expect_column_max_to_be_between

Thresholds ``mustBe: 0`` mean every row must pass; ``mustBeLessThan: x`` with ``unit: percent``
becomes GX's ``mostly = 1 - x/100``. Severity is the rule's ``severity`` (default ``error``);
schema-derived checks (type, required, unique, ranges) are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.platform.config import PROJECT_ROOT
from jobs.platform.errors import ContractError

CONTRACTS_DIR = PROJECT_ROOT / "data_contracts"
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Check:
    name: str
    expectation_type: str
    kwargs: dict[str, Any]
    severity: str = "error"
    column: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class VolumeRule:
    """Row count relative to the median of recent validated days (bounds filled at run time)."""

    name: str
    days: int
    min_ratio: float
    max_ratio: float
    minimum: int = 0
    severity: str = "warning"


@dataclass(frozen=True)
class FreshnessRule:
    name: str
    column: str
    max_age_days: float
    severity: str = "warning"


@dataclass
class Contract:
    id: str
    version: str
    dataset: str
    path: Path
    checks: list[Check] = field(default_factory=list)
    volume: VolumeRule | None = None
    freshness: FreshnessRule | None = None
    columns: list[str] = field(default_factory=list)
    # columns classified ``restricted`` (personal data or its hashes): a failing check on the
    # contract never copies row values into messages, results or Data Docs
    restricted_columns: list[str] = field(default_factory=list)


def _mostly(rule: dict, where: str) -> float:
    if "mustBe" in rule:
        if rule["mustBe"] != 0:
            raise ContractError(f"{where}: only mustBe: 0 is supported for row-level metrics")
        return 1.0
    for key in ("mustBeLessThan", "mustBeLessOrEqualTo"):
        if key in rule:
            if rule.get("unit", "rows") != "percent":
                raise ContractError(f"{where}: {key} needs unit: percent for row-level metrics")
            return max(0.0, 1.0 - float(rule[key]) / 100.0)
    raise ContractError(f"{where}: a threshold (mustBe or mustBeLessThan) is required")


def _severity(rule: dict, where: str) -> str:
    severity = str(rule.get("severity", "error")).lower()
    if severity not in SEVERITIES:
        raise ContractError(f"{where}: severity must be one of {SEVERITIES}, got {severity!r}")
    return severity


def _property_checks(prop: dict, where: str) -> list[Check]:
    name = prop.get("name")
    if not name:
        raise ContractError(f"{where}: property without a name")
    where = f"{where}.{name}"
    checks = [Check(f"{name}__exists", "expect_column_to_exist", {"column": name}, column=name)]
    if prop.get("physicalType"):
        checks.append(
            Check(
                f"{name}__type",
                "expect_column_values_to_be_of_type",
                {"column": name, "type_": prop["physicalType"]},
                column=name,
            )
        )
    if prop.get("required"):
        checks.append(Check(f"{name}__not_null", "expect_column_values_to_not_be_null", {"column": name}, column=name))
    if prop.get("unique"):
        checks.append(Check(f"{name}__unique", "expect_column_values_to_be_unique", {"column": name}, column=name))
    options = prop.get("logicalTypeOptions") or {}
    if "minimum" in options or "maximum" in options:
        checks.append(
            Check(
                f"{name}__range",
                "expect_column_values_to_be_between",
                {"column": name, "min_value": options.get("minimum"), "max_value": options.get("maximum")},
                column=name,
            )
        )
    for index, rule in enumerate(prop.get("quality") or []):
        rule_where = f"{where}.quality[{index}]"
        metric = rule.get("metric") or rule.get("rule")
        check_name = rule.get("name") or f"{name}__{metric}_{index}"
        args = rule.get("arguments") or {}
        common = {"severity": _severity(rule, rule_where), "column": name, "description": rule.get("description")}
        if metric == "invalidValues" and "validValues" in args:
            kwargs = {"column": name, "value_set": list(args["validValues"]), "mostly": _mostly(rule, rule_where)}
            checks.append(Check(check_name, "expect_column_values_to_be_in_set", kwargs, **common))
        elif metric == "invalidValues" and "pattern" in args:
            kwargs = {"column": name, "regex": args["pattern"], "mostly": _mostly(rule, rule_where)}
            checks.append(Check(check_name, "expect_column_values_to_match_regex", kwargs, **common))
        elif metric == "nullValues":
            kwargs = {"column": name, "mostly": _mostly(rule, rule_where)}
            checks.append(Check(check_name, "expect_column_values_to_not_be_null", kwargs, **common))
        elif metric == "duplicateValues":
            checks.append(Check(check_name, "expect_column_values_to_be_unique", {"column": name}, **common))
        else:
            raise ContractError(f"{rule_where}: unsupported quality metric {metric!r}")
    return checks


def parse_contract(path: Path) -> Contract:
    """Read one ODCS YAML file into a :class:`Contract`."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML ({exc})") from exc
    for key in ("apiVersion", "kind", "id", "version", "schema"):
        if key not in (doc or {}):
            raise ContractError(f"{path}: missing required key '{key}'")
    if doc["kind"] != "DataContract" or not str(doc["apiVersion"]).startswith("v3"):
        raise ContractError(f"{path}: expected an ODCS v3 DataContract")
    if len(doc["schema"]) != 1:
        raise ContractError(f"{path}: exactly one schema object per contract is supported")
    obj = doc["schema"][0]
    if not isinstance(obj, dict) or not obj.get("name"):
        raise ContractError(f"{path}: missing required key 'name' in schema[0]")
    dataset = obj["name"]
    contract = Contract(id=doc["id"], version=str(doc["version"]), dataset=dataset, path=path)
    for index, prop in enumerate(obj.get("properties") or []):
        contract.checks.extend(_property_checks(prop, f"{path.name}: schema.{dataset}.properties[{index}]"))
        contract.columns.append(prop["name"])
        if str(prop.get("classification", "")).lower() == "restricted":
            contract.restricted_columns.append(prop["name"])
    for index, rule in enumerate(obj.get("quality") or []):
        where = f"{path.name}: schema.{dataset}.quality[{index}]"
        metric = rule.get("metric")
        name = rule.get("name") or f"{dataset}__{metric}_{index}"
        if metric == "duplicateValues":
            columns = (rule.get("arguments") or {}).get("properties")
            if not columns:
                raise ContractError(f"{where}: duplicateValues needs arguments.properties")
            expectation = (
                "expect_compound_columns_to_be_unique" if len(columns) > 1 else "expect_column_values_to_be_unique"
            )
            kwargs = {"column_list": list(columns)} if len(columns) > 1 else {"column": columns[0]}
            contract.checks.append(
                Check(name, expectation, kwargs, _severity(rule, where), ",".join(columns), rule.get("description"))
            )
        elif metric == "rowCount":
            relative = {
                prop["property"]: prop["value"]
                for prop in rule.get("customProperties") or []
                if isinstance(prop, dict) and "property" in prop
            }.get("relativeToRecentDays")
            minimum = (
                int(rule.get("mustBeGreaterThan", -1)) + 1
                if "mustBeGreaterThan" in rule
                else int(rule.get("mustBeGreaterOrEqualTo", 0))
            )
            contract.volume = VolumeRule(
                name=name,
                days=int((relative or {}).get("days", 7)),
                min_ratio=float((relative or {}).get("minRatio", 0.0)),
                max_ratio=float((relative or {}).get("maxRatio", float("inf"))),
                minimum=minimum,
                severity=_severity(rule, where),
            )
        else:
            raise ContractError(f"{where}: unsupported schema-level metric {metric!r}")
    for sla in doc.get("slaProperties") or []:
        if sla.get("property") == "freshness":
            unit = str(sla.get("unit", "d")).lower()
            factor = {"d": 1.0, "day": 1.0, "days": 1.0, "h": 1 / 24, "hour": 1 / 24, "hours": 1 / 24}.get(unit)
            if factor is None:
                raise ContractError(f"{path.name}: slaProperties freshness unit {unit!r} not supported (d or h)")
            if "value" not in sla:
                raise ContractError(f"{path.name}: slaProperties freshness needs a 'value'")
            column = str(sla.get("element", "")).split(".")[-1]
            if column not in contract.columns:
                raise ContractError(f"{path.name}: freshness element {sla.get('element')!r} is not a property")
            contract.freshness = FreshnessRule(f"{column}__freshness", column, float(sla["value"]) * factor)
    return contract


def load_contracts(directory: Path = CONTRACTS_DIR) -> dict[str, Contract]:
    """All contracts by dataset name."""
    contracts = {}
    for path in sorted(directory.glob("*.odcs.yaml")):
        contract = parse_contract(path)
        contracts[contract.dataset] = contract
    if not contracts:
        raise ContractError(f"no *.odcs.yaml contracts found in {directory}")
    return contracts
