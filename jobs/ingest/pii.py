"""Keyed hashing of personal data (email, phone) before it reaches the warehouse.

The HMAC key comes from the environment variable named by ``pii.hash_key_env`` and must be at
least :data:`MIN_KEY_BYTES` long. For a laptop demo, ``pii.allow_generated_key`` lets the
pipeline generate one under ``state_root`` (announced loudly, once); production sets it to
false, and then a missing key is an error. The warehouse remembers a fingerprint of the key
(``ops_pii_key``), so a run with a different key stops instead of mixing two sets of hashes
that can never be joined.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
from datetime import UTC, datetime

import sqlalchemy as sa

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError, HashKeyMismatchError
from jobs.platform.storage import open_storage

log = logging.getLogger(__name__)
GENERATED_KEY = "secrets/pii_hash_key"
MIN_KEY_BYTES = 32
_FINGERPRINT_LABEL = b"marketing-pipeline pii key fingerprint v1"


def _generated_key(config: PipelineConfig) -> bytes:
    state = open_storage(config.storage.state_root, config.storage.s3_endpoint_url)
    if not state.exists(GENERATED_KEY):
        state.write_bytes(GENERATED_KEY, secrets.token_hex(32).encode())
        banner = (
            f"WARNING: {config.pii.hash_key_env} is not set, so a DEVELOPMENT PII hashing key was generated "
            f"at {state.uri(GENERATED_KEY)}. Fine for a demo; in production set {config.pii.hash_key_env} "
            "and pii.allow_generated_key: false."
        )
        log.warning(banner)
        print(banner, file=sys.stderr, flush=True)
    return state.read_bytes(GENERATED_KEY).strip()


def hash_key(config: PipelineConfig) -> bytes:
    """The HMAC key, checked: long enough, and the one the warehouse's hashes were made with."""
    value = os.environ.get(config.pii.hash_key_env)
    if value:
        key = value.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{config.pii.hash_key_env} (pii.hash_key_env) holds a {len(key)}-byte key; the PII hashing key "
                f"needs at least {MIN_KEY_BYTES} bytes (e.g. the output of 'openssl rand -hex 32')"
            )
    elif config.pii.allow_generated_key:
        key = _generated_key(config)
    else:
        raise ConfigError(
            f"environment variable {config.pii.hash_key_env} (pii.hash_key_env) is not set; it holds the PII "
            "hashing key (pii.allow_generated_key is false, so none is generated)"
        )
    check_key_fingerprint(config, key)
    return key


def key_fingerprint(key: bytes) -> str:
    """Identifies a key without revealing it: an HMAC of a fixed label under the key."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def check_key_fingerprint(config: PipelineConfig, key: bytes) -> None:
    """Record the key's fingerprint on first use; refuse a key with another fingerprint."""
    from jobs.platform.ops import warehouse_engine

    fingerprint = key_fingerprint(key)
    table = f"{config.warehouse.schema_name}.ops_pii_key"
    with warehouse_engine(config).begin() as conn:
        known = conn.execute(sa.text(f"select key_fingerprint from {table}")).scalars().all()
        if not known:
            conn.execute(
                sa.text(f"insert into {table} (key_fingerprint, first_used_at) values (:f, :at)"),
                {"f": fingerprint, "at": datetime.now(UTC)},
            )
        elif fingerprint not in known:
            raise HashKeyMismatchError(
                f"the PII hashing key from {config.pii.hash_key_env} is not the one the warehouse's email/phone "
                f"hashes were made with (fingerprint {fingerprint[:8]}…, expected {known[0][:8]}…); "
                "use the original key, or re-hash the warehouse deliberately before switching keys"
            )


def normalise_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def normalise_phone(value: str | None) -> str | None:
    if value is None:
        return None
    digits = re.sub(r"[^0-9+]", "", value)
    return digits or None


def keyed_hash(key: bytes, value: str | None) -> str | None:
    """HMAC-SHA256 hex of an already-normalised value; None stays None."""
    if value is None:
        return None
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
