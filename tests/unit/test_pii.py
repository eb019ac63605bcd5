"""The PII hashing key: long enough, generated only where allowed (and then announced), and
never mixed with another key in one warehouse."""

import pytest

from jobs.ingest.pii import GENERATED_KEY, hash_key, key_fingerprint
from jobs.platform.errors import ConfigError, HashKeyMismatchError

KEY = "k" * 40


def test_a_key_from_the_environment_is_used_and_its_fingerprint_remembered(make_config, monkeypatch):
    config = make_config()
    monkeypatch.setenv(config.pii.hash_key_env, KEY)
    assert hash_key(config) == KEY.encode()
    assert hash_key(config) == KEY.encode()  # the same key again is fine


def test_a_short_key_is_refused_naming_the_variable(make_config, monkeypatch):
    config = make_config()
    monkeypatch.setenv(config.pii.hash_key_env, "too-short")
    with pytest.raises(ConfigError, match=r"MKT_PII_HASH_KEY .* 9-byte key; .* at least 32 bytes"):
        hash_key(config)


def test_another_key_on_the_same_warehouse_stops_with_a_clear_error(make_config, monkeypatch):
    config = make_config()
    monkeypatch.setenv(config.pii.hash_key_env, KEY)
    hash_key(config)
    monkeypatch.setenv(config.pii.hash_key_env, "z" * 40)
    with pytest.raises(
        HashKeyMismatchError, match="not the one the warehouse's email/phone hashes were made with"
    ) as caught:
        hash_key(config)
    assert "z" * 10 not in str(caught.value) and KEY[:10] not in str(caught.value)  # no key in the message


def test_without_a_key_a_generated_one_is_refused_when_not_allowed(make_config, monkeypatch):
    config = make_config(pii={"allow_generated_key": False})
    monkeypatch.delenv(config.pii.hash_key_env, raising=False)
    with pytest.raises(ConfigError, match=r"MKT_PII_HASH_KEY .* is not set"):
        hash_key(config)


def test_a_generated_dev_key_is_announced_once_and_then_reused(make_config, monkeypatch, capsys, tmp_path):
    config = make_config()
    monkeypatch.delenv(config.pii.hash_key_env, raising=False)
    first = hash_key(config)
    announced = capsys.readouterr().err
    assert "DEVELOPMENT PII hashing key was generated" in announced and GENERATED_KEY in announced
    assert hash_key(config) == first
    assert "DEVELOPMENT" not in capsys.readouterr().err
    assert len(first) >= 32


def test_the_fingerprint_does_not_reveal_the_key():
    assert KEY not in key_fingerprint(KEY.encode())
    assert key_fingerprint(KEY.encode()) != key_fingerprint(b"y" * 40)
