"""Keyed hashing of personal data (email, phone) before it reaches the warehouse."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError
from jobs.platform.storage import open_storage

log = logging.getLogger(__name__)
GENERATED_KEY = "secrets/pii_hash_key"


def hash_key(config: PipelineConfig) -> bytes:
    """The HMAC key: from the environment; in dev/demo, generated once and kept in state_root."""
    value = os.environ.get(config.pii.hash_key_env)
    if value:
        return value.encode()
    if not config.pii.allow_generated_key:
        raise ConfigError(
            f"environment variable {config.pii.hash_key_env} (pii.hash_key_env) is not set; "
            "it holds the PII hashing key"
        )
    state = open_storage(config.storage.state_root, config.storage.s3_endpoint_url)
    if not state.exists(GENERATED_KEY):
        log.warning("no %s set: generating a development PII key", config.pii.hash_key_env)
        state.write_bytes(GENERATED_KEY, secrets.token_hex(32).encode())
    return state.read_bytes(GENERATED_KEY).strip()


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
