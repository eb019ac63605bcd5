"""Pipeline configuration: one YAML file, overridable by ``MKT_*`` environment variables.

The file is ``config/pipeline.yaml`` unless ``MKT_CONFIG`` names another one. Any setting can be
overridden from the environment with ``MKT_<SECTION>__<KEY>``, e.g.
``MKT_WAREHOUSE__URL=postgresql+psycopg://...`` or ``MKT_STORAGE__LANDING_ROOT=s3://shop/landing``.
A wrong key, type or URL fails fast with :class:`ConfigError`, whose message is one line naming it.
"""

from __future__ import annotations

import json
import os
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from jobs.platform.errors import ConfigError, one_line

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "pipeline.yaml"
ENV_PREFIX = "MKT_"


def _sql_identifier(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
        raise ValueError(f"{value!r} must be a lower-case SQL identifier")
    return value


# schema and role names are formatted into DDL and grants: only plain identifiers pass
SqlIdentifier = Annotated[str, AfterValidator(_sql_identifier)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShopConfig(_Section):
    name: str = "demo-shop"
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class StorageConfig(_Section):
    landing_root: str = "data/landing"
    lake_root: str = "data/lake"
    reports_root: str = "data/reports"
    exports_root: str = "data/exports"
    state_root: str = "data/state"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    @field_validator("landing_root", "lake_root", "reports_root", "exports_root", "state_root")
    @classmethod
    def _root_scheme(cls, value: str) -> str:
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError(f"storage root {value!r} must be a local path or s3://bucket/prefix")
        return value


class SourceConfig(_Section):
    url: str = "sqlite:///data/source/shop.db"
    tables: tuple[str, ...] = ("users", "products", "orders", "order_items", "suppressions")
    # the shop's own files or schema mapped onto the interface (jobs/ingest/source_map.py)
    mapping_file: str | None = None
    # false: an orders-only shop that sends no behaviour events. The events contract is not
    # checked (no nightly "no events" warnings) and tags on behaviour are not published.
    events: bool = True

    @field_validator("url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        return _check_sqlalchemy_url(value)


class WarehouseConfig(_Section):
    url: str = "duckdb:///data/warehouse/marketing.duckdb"
    schema_name: SqlIdentifier = Field("main", alias="schema")
    bi_role: SqlIdentifier | None = Field(None, description="PostgreSQL role granted read-only, PII-free access")
    lock_timeout_seconds: int = Field(
        600, ge=0, description="how long a run waits for another run writing the warehouse before it gives up"
    )

    @field_validator("url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        return _check_sqlalchemy_url(value)


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "marketing-pipeline"
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(8, ge=1)
    log_level: str = "WARN"
    conf: dict[str, str] = Field(default_factory=dict)


class CollectConfig(_Section):
    lookback_days: int = Field(3, ge=0, description="earlier landing days scanned for late files")
    late_scan_days: int = Field(7, ge=0, description="days before the lookback checked for late files never collected")
    source_overlap_minutes: int = Field(60, ge=0)
    full_reload: bool = False


class NonMerchandiseRule(_Section):
    """Products matching ``sku`` or ``name`` (regular expressions, matched whole, case-insensitive)
    are of ``type`` (one of interface.PRODUCT_TYPES other than merchandise), unless the source
    gives the product's type itself."""

    type: str
    sku: str | None = None
    name: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from jobs.platform.interface import PRODUCT_TYPES

        if value not in PRODUCT_TYPES[1:]:
            raise ValueError(f"{value!r} is not a non-merchandise type; use one of {', '.join(PRODUCT_TYPES[1:])}")
        return value

    @field_validator("sku", "name")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        import re

        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value


class CleanConfig(_Section):
    late_window_days: int = Field(3, ge=0, description="events older than this are quarantined")
    future_tolerance_minutes: int = Field(60, ge=0, description="clock skew accepted")
    bot_max_events_per_minute: int = Field(30, ge=1)
    max_line_bytes: int = Field(1 << 20, ge=1, description="longer event lines are quarantined as line_too_long")
    # Impossible values are quarantined (invalid_amount / invalid_value); the limits are far above
    # any real shop's, wholesale included. Large but legal values are flagged, never rejected.
    max_order_amount: float = Field(100_000_000, gt=0, description="larger order totals are invalid_amount")
    max_item_quantity: int = Field(10_000_000, ge=1, description="larger line quantities are invalid_value")
    large_order_amount: float = Field(10_000, gt=0, description="orders above this are flagged is_large_order")
    large_item_quantity: int = Field(1_000, ge=1, description="lines above this are flagged is_bulk_line")
    non_merchandise: list[NonMerchandiseRule] = Field(
        default_factory=list,
        description="products that are not goods, for a source without product_type: matched on sku or name",
    )


class ValidationConfig(_Section):
    contracts_dir: str = "data_contracts"
    volume_history_days: int = Field(7, ge=1)
    build_data_docs: bool = True


class RetentionConfig(_Section):
    raw_days: int = Field(30, ge=1, description="raw zone: events as received, source extracts")
    quarantine_days: int = Field(90, ge=1, description="quarantined rows and files")
    restricted_days: int = Field(400, ge=1, description="personal data in clear (restricted zone)")


class CustomersConfig(_Section):
    segments_file: str = Field("config/segments.yaml", description="RFM scoring and lifecycle rules")
    tags_file: str = Field("config/tags.yaml", description="customer tag definitions")


class ActivationConfig(_Section):
    campaigns_file: str = Field("config/campaigns.yaml", description="campaigns, holdouts, caps, association rules")


class RecommenderSection(_Section):
    config_file: str = Field("config/recommender.yaml", description="interactions, tuning, evaluation, baselines")
    registry_root: str = Field("data/models", description="model registry: local path or s3://bucket/prefix")


class PiiConfig(_Section):
    hash_key_env: str = "MKT_PII_HASH_KEY"
    allow_generated_key: bool = Field(
        True, description="dev/demo only: generate and keep a key under state_root when unset"
    )


class PortalConfig(_Section):
    database_url: str = Field(
        "sqlite:///data/portal/portal.db", description="the portal's own database: users, sessions, audit log"
    )
    app_role: SqlIdentifier | None = Field(
        None, description="PostgreSQL: the role the portal connects as (granted no UPDATE/DELETE on the audit log)"
    )
    session_idle_minutes: int = Field(30, ge=1, description="a session ends after this long without a request")
    session_max_hours: int = Field(12, ge=1, description="and this long after sign-in, whatever happens")
    login_max_failures: int = Field(5, ge=1, description="failed sign-ins per name or address before a pause")
    login_window_minutes: int = Field(15, ge=1, description="the window those failures are counted in")
    secure_cookies: bool = Field(
        False, description="always mark cookies Secure (they are whenever the request came over https)"
    )
    preview_rows: int = Field(20, ge=1, le=500, description="rows shown in a list preview")

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        return _check_sqlalchemy_url(value)


class AirflowConfig(_Section):
    schedule: str = "0 3 * * *"
    start_date: str = "2026-01-01"
    retries: int = Field(2, ge=0)
    retry_delay_minutes: int = Field(5, ge=0)


class AlertsConfig(_Section):
    finish_by: str = Field(
        "07:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="local time (HH:MM, shop time zone) by which the night's whole chain must have finished",
    )
    webhook_url: str | None = Field(
        None, description="POST every alert here as JSON (a Slack-style 'text' field); a secret: set it by environment"
    )
    smtp_conn_id: str | None = Field(None, description="Airflow connection of the SMTP server that mails alerts")
    email_to: list[str] = Field(default_factory=list, description="who gets the alert e-mails")
    email_from: str | None = Field(None, description="sender of the alert e-mails (default: the connection's)")

    @model_validator(mode="after")
    def _mail_needs_both(self) -> AlertsConfig:
        if bool(self.smtp_conn_id) != bool(self.email_to):
            raise ValueError("smtp_conn_id and email_to go together: set both to mail alerts, or neither")
        return self

    @property
    def finish_by_time(self) -> time:
        hours, minutes = self.finish_by.split(":")
        return time(int(hours), int(minutes))


class PipelineConfig(BaseSettings):
    """The whole configuration: the YAML file, then ``MKT_<SECTION>__<KEY>`` environment
    variables over it (read by pydantic-settings), then explicit overrides over both."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_parse_none_str="", extra="forbid", frozen=True
    )

    shop: ShopConfig = ShopConfig()
    storage: StorageConfig = StorageConfig()
    source: SourceConfig = SourceConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    spark: SparkConfig = SparkConfig()
    collect: CollectConfig = CollectConfig()
    clean: CleanConfig = CleanConfig()
    validation: ValidationConfig = ValidationConfig()
    customers: CustomersConfig = CustomersConfig()
    retention: RetentionConfig = RetentionConfig()
    recommender: RecommenderSection = RecommenderSection()
    activation: ActivationConfig = ActivationConfig()
    pii: PiiConfig = PiiConfig()
    portal: PortalConfig = PortalConfig()
    airflow: AirflowConfig = AirflowConfig()
    alerts: AlertsConfig = AlertsConfig()
    source_file: str | None = None

    @model_validator(mode="after")
    def _raw_outlives_what_collect_reads(self) -> PipelineConfig:
        needed = self.collect.lookback_days + self.collect.late_scan_days
        if self.retention.raw_days <= needed:
            raise ValueError(
                f"retention.raw_days ({self.retention.raw_days}) must be more than collect.lookback_days + "
                f"collect.late_scan_days ({needed}): collect reads raw manifests back that far"
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.shop.timezone)


def masked_url(url: str) -> str:
    """A URL fit to print: any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def printable(config: PipelineConfig) -> dict[str, Any]:
    """The configuration as ``marketing config`` shows it: passwords in URLs masked, and the
    alert webhook's path (chat webhooks carry their token there) hidden."""
    data = config.model_dump(by_alias=True)
    webhook = data["alerts"].get("webhook_url")
    if webhook:
        scheme, _, rest = webhook.partition("://")
        data["alerts"]["webhook_url"] = f"{scheme}://{rest.split('/', 1)[0]}/***"
    for section, key in (
        ("source", "url"),
        ("warehouse", "url"),
        ("portal", "database_url"),
        ("storage", "s3_endpoint_url"),
    ):
        if data[section].get(key):
            data[section][key] = masked_url(data[section][key])
    return data


def _check_sqlalchemy_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError as exc:
        raise ValueError(f"not a SQLAlchemy URL: {value!r}") from exc
    return value


def _resolve_path(value: str, base: Path) -> str:
    """Relative local paths are relative to the project root, so every entry point agrees."""
    if value.startswith("s3://") or value.startswith("/"):
        return value
    if value.startswith("file://"):
        return value[len("file://") :]
    return str((base / value).resolve())


def _resolve_sqlite_like(url: str, base: Path) -> str:
    for prefix in ("sqlite:///", "duckdb:///"):
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str((base / url[len(prefix) :]).resolve())
    return url


class _Environment(EnvSettingsSource):
    """``MKT_SECTION__KEY`` variables from a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> dict[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class _Values(PydanticBaseSettingsSource):
    """Already-read settings (the YAML file's, or explicit overrides) as a settings source."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


def _read_file(config_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {config_path}")
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {config_path} is not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {config_path}{where} is not valid YAML") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {config_path} must hold a mapping of sections")
    return raw


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{key}'"
    if error["type"] == "value_error":
        message = error["msg"].removeprefix("Value error, ")
        return f"setting '{key}': {message}" if key else message  # no key: a rule across settings
    return f"setting '{key}': {error['msg']} (got {error.get('input')!r})"


def _variable_for(loc: tuple, environ: dict[str, str]) -> str | None:
    """The ``MKT_...`` variable that set the setting at ``loc``, if one did."""
    parts = [str(part) for part in loc if not isinstance(part, int)]
    for depth in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:depth]).upper()
        if any(key.upper() == name for key in environ):
            return name
    return None


def _unparsable_variable(environ: dict[str, str]) -> str | None:
    for name, value in sorted(environ.items()):
        if name.upper().startswith(ENV_PREFIX) and "__" in name and value.lstrip()[:1] in ("[", "{"):
            try:
                json.loads(value)
            except ValueError as exc:
                return f"{name}: not valid JSON for a list or mapping setting ({exc})"
    return None


def load_config(
    path: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineConfig:
    """Read, merge and validate the configuration; raise :class:`ConfigError` on any problem."""
    environ = dict(os.environ if environ is None else environ)
    config_path = Path(path or environ.get("MKT_CONFIG") or DEFAULT_CONFIG)
    raw = _read_file(config_path)

    class _Loaded(PipelineConfig):
        @classmethod
        def settings_customise_sources(cls, settings_cls, **_defaults):
            # first wins: explicit overrides, then the environment, then the file
            return (
                _Values(settings_cls, overrides or {}),
                _Environment(settings_cls, environ),
                _Values(settings_cls, raw),
            )

    try:
        config = PipelineConfig.model_validate(_Loaded().model_dump(by_alias=True))
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        variable = _variable_for(first["loc"], environ)
        raise ConfigError(f"{variable or config_path}: {_describe(first)}{more}") from exc
    except SettingsError as exc:  # an environment value that is not valid JSON for a list/dict setting
        raise ConfigError(f"{_unparsable_variable(environ) or one_line(exc)}") from exc

    base = PROJECT_ROOT
    storage = config.storage.model_copy(
        update={
            name: _resolve_path(getattr(config.storage, name), base)
            for name in ("landing_root", "lake_root", "reports_root", "exports_root", "state_root")
        }
    )
    validation = config.validation.model_copy(
        update={"contracts_dir": _resolve_path(config.validation.contracts_dir, base)}
    )
    customers = config.customers.model_copy(
        update={name: _resolve_path(getattr(config.customers, name), base) for name in ("segments_file", "tags_file")}
    )
    return config.model_copy(
        update={
            "storage": storage,
            "validation": validation,
            "customers": customers,
            "activation": config.activation.model_copy(
                update={"campaigns_file": _resolve_path(config.activation.campaigns_file, base)}
            ),
            "recommender": config.recommender.model_copy(
                update={
                    name: _resolve_path(getattr(config.recommender, name), base)
                    for name in ("config_file", "registry_root")
                }
            ),
            "source": config.source.model_copy(
                update={
                    "url": _resolve_sqlite_like(config.source.url, base),
                    "mapping_file": config.source.mapping_file and _resolve_path(config.source.mapping_file, base),
                }
            ),
            "warehouse": config.warehouse.model_copy(update={"url": _resolve_sqlite_like(config.warehouse.url, base)}),
            "portal": config.portal.model_copy(
                update={"database_url": _resolve_sqlite_like(config.portal.database_url, base)}
            ),
            "source_file": str(config_path),
        }
    )


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str):
    """Read a YAML settings file (segments, tags, ...) into ``model``. Errors are one line naming
    the file and the key; list items are shown with their ``id`` or ``name`` (``tags.5(loyalty).rules``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return model.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML") from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        parts, node = [], raw
        for part in error["loc"]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
            named = isinstance(part, int) and isinstance(node, dict) and (node.get("id") or node.get("name"))
            parts.append(f"{part}({named})" if named else str(part))
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: setting '{'.'.join(parts)}': {message}") from exc
