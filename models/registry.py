"""A versioned model registry on any :class:`jobs.platform.storage.Storage` (local folder or S3).

Layout under the registry root::

    <model>/versions/<version>/meta.json        parameters, metrics, gate decision, data
                                                 snapshot facts, code version, created_at
    <model>/versions/<version>/<name>.parquet   artefacts (factors with their ids, the
                                                 training interactions snapshot, ...): one
                                                 file, or a folder of part files when the
                                                 artefact is a Spark frame (written by the
                                                 executors, never collected)
    <model>/production.json                     the live version
    <model>/history.jsonl                       every promotion and rollback, appended

A version's files are written before it can be promoted, and ``production.json`` is one
small object replaced at once, so readers always see a complete live version. Promotion and
rollback are explicit (``marketing models promote|rollback``) or done by the nightly gate.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.platform.errors import DeterministicError, PublishMismatchError


class RegistryError(DeterministicError, ValueError):
    """An unknown version, or nothing to roll back to."""


class Registry:
    def __init__(self, storage, model: str):
        self.storage, self.model = storage, model

    def _key(self, *parts: str) -> str:
        return "/".join([self.model, *parts])

    def save(self, version: str, meta: dict, artefacts: dict) -> None:
        """Write the artefacts (Arrow tables, or Spark frames) and then ``meta.json``."""
        for name, table in artefacts.items():
            key = self._key("versions", version, f"{name}.parquet")
            if isinstance(table, pa.Table):
                from jobs.platform.lake import parquet_rows

                buffer = io.BytesIO()
                pq.write_table(table, buffer)
                self.storage.write_bytes(key, buffer.getvalue())
                held = parquet_rows(self.storage, [key])
                if held != table.num_rows:  # read back before meta.json makes the version loadable
                    raise PublishMismatchError(
                        f"{self.storage.uri(key)}: wrote {table.num_rows:,} rows but the file holds {held:,}"
                    )
            else:
                from jobs.platform.lake import spark_uri

                table.write.mode("overwrite").parquet(spark_uri(self.storage, key))
        record = {**meta, "version": version, "model": self.model, "artefacts": sorted(artefacts)}
        record.setdefault("created_at", datetime.now(UTC).isoformat())
        self.storage.write_bytes(
            self._key("versions", version, "meta.json"), json.dumps(record, indent=2, default=str).encode()
        )

    def meta(self, version: str) -> dict:
        key = self._key("versions", version, "meta.json")
        if not self.storage.exists(key):
            raise RegistryError(f"{self.model}: no version {version!r} in the registry at {self.storage.uri()}")
        return json.loads(self.storage.read_bytes(key))

    def load(self, version: str, name: str) -> pa.Table:
        self.meta(version)
        key = self._key("versions", version, f"{name}.parquet")
        if self.storage.exists(key):
            return pq.read_table(io.BytesIO(self.storage.read_bytes(key)))
        parts = [info.key for info in self.storage.list(key + "/") if info.key.endswith(".parquet")]
        if not parts:
            raise RegistryError(f"{self.model}: version {version!r} has no artefact {name!r}")
        return pa.concat_tables(pq.read_table(io.BytesIO(self.storage.read_bytes(part))) for part in parts)

    def versions(self) -> list[dict]:
        """Every version's metadata, oldest first."""
        metas = [
            json.loads(self.storage.read_bytes(info.key))
            for info in self.storage.list(self._key("versions") + "/")
            if info.key.endswith("/meta.json")
        ]
        return sorted(metas, key=lambda m: (m.get("created_at", ""), m["version"]))

    def production(self) -> dict | None:
        key = self._key("production.json")
        if not self.storage.exists(key):
            return None
        return self.meta(json.loads(self.storage.read_bytes(key))["version"])

    def history(self) -> list[dict]:
        key = self._key("history.jsonl")
        if not self.storage.exists(key):
            return []
        return [json.loads(line) for line in self.storage.read_bytes(key).decode().splitlines() if line.strip()]

    def _set_production(self, version: str, action: str, reason: str) -> dict:
        meta = self.meta(version)
        current = self.production()
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "action": action,
            "version": version,
            "previous": current["version"] if current else None,
            "reason": reason,
        }
        history = self.history() + [entry]
        self.storage.write_bytes(self._key("history.jsonl"), "".join(json.dumps(h) + "\n" for h in history).encode())
        self.storage.write_bytes(
            self._key("production.json"), json.dumps({"version": version, "since": entry["at"]}).encode()
        )
        return meta

    def promote(self, version: str, reason: str = "promoted by hand") -> dict:
        return self._set_production(version, "promote", reason)

    def rollback(self, reason: str = "rolled back by hand") -> dict:
        """Make the version that was live before the current one live again."""
        current = self.production()
        if current is None:
            raise RegistryError(f"{self.model}: nothing is in production, nothing to roll back")
        promoted = [h for h in self.history() if h["version"] == current["version"] and h["action"] == "promote"]
        previous = promoted[-1]["previous"] if promoted else None
        if previous is None:
            raise RegistryError(f"{self.model}: {current['version']} has no earlier production version to roll back to")
        return self._set_production(previous, "rollback", reason)
