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
    config = load_config(environ={"MKT_SPARK__SHUFFLE_PARTITIONS": "3", "MKT_STORAGE__LANDING_ROOT": "s3://shop/landing"})
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
