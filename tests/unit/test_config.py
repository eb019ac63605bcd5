from pathlib import Path

import pytest

from jobs.platform.config import load_config
from jobs.platform.errors import ConfigError


def test_defaults_load_and_resolve_relative_paths():
    config = load_config(environ={})
    assert Path(config.storage.lake_root).is_absolute()
    assert config.warehouse.url.startswith("duckdb:////")
    assert config.shop.timezone == "Asia/Shanghai"


def test_environment_overrides_nested_keys():
    config = load_config(
        environ={"MKT_SPARK__SHUFFLE_PARTITIONS": "3", "MKT_STORAGE__LANDING_ROOT": "s3://shop/landing"}
    )
    assert config.spark.shuffle_partitions == 3
    assert config.storage.landing_root == "s3://shop/landing"


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"MKT_SPARK__SHUFFLE_PARTITIONS": "many"}, "spark.shuffle_partitions"),
        ({"MKT_SHOP__TIMEZONE": "Mars/Olympus"}, "shop.timezone"),
        ({"MKT_WAREHOUSE__URL": "not a url"}, "warehouse.url"),
        ({"MKT_CLEAN__TYPO": "1"}, "unknown setting 'clean.typo'"),
        ({"MKT_STORAGE__LAKE_ROOT": "ftp://x/y"}, "storage.lake_root"),
    ],
)
def test_bad_setting_fails_with_one_line_naming_the_key(environ, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_config_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("shop:\n  timezone: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml line"):
        load_config(bad, environ={})


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"MKT_SPARK__SHUFFLE_PARTITIONS": "many"})
    assert str(caught.value).startswith("MKT_SPARK__SHUFFLE_PARTITIONS: setting 'spark.shuffle_partitions'")
    with pytest.raises(ConfigError, match=r"^MKT_SPARK__CONF: not valid JSON"):
        load_config(environ={"MKT_SPARK__CONF": "{spark.x: 1"})


def test_environment_values_win_over_the_file_and_mappings_merge(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("spark:\n  shuffle_partitions: 5\n  conf: {a: b}\nwarehouse:\n  schema: from_file\n")
    config = load_config(path, environ={"MKT_SPARK__CONF": '{"c": "d"}', "MKT_WAREHOUSE__SCHEMA": "from_env"})
    # a mapping setting is merged key by key
    assert (config.spark.shuffle_partitions, config.spark.conf, config.warehouse.schema_name) == (
        5,
        {"a": "b", "c": "d"},
        "from_env",
    )


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("shop:\n  name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text"):
        load_config(path, environ={})


def test_printed_configuration_masks_passwords():
    from jobs.platform.config import printable

    config = load_config(environ={"MKT_WAREHOUSE__URL": "postgresql+psycopg://owner:s3cret-pw@db:5432/marketing"})
    shown = printable(config)
    assert "s3cret-pw" not in str(shown)
    assert shown["warehouse"]["url"] == "postgresql+psycopg://owner:***@db:5432/marketing"


def test_printed_configuration_hides_the_alert_webhooks_token():
    from jobs.platform.config import printable

    config = load_config(environ={"MKT_ALERTS__WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/tok3n"})
    assert config.alerts.webhook_url.endswith("/tok3n")  # used as given
    shown = printable(config)
    assert "tok3n" not in str(shown) and shown["alerts"]["webhook_url"] == "https://hooks.example.com/***"


def test_raw_retention_must_outlive_what_collect_reads_back():
    with pytest.raises(ConfigError, match=r"retention.raw_days \(5\) must be more than collect.lookback_days"):
        load_config(environ={"MKT_RETENTION__RAW_DAYS": "5"})
