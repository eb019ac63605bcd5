"""Collecting event files from an S3 landing zone, against a real S3 API server on loopback.

A moto server runs in a thread (the session's ``s3_server``); every test starts from an empty S3
(``/moto-api/reset``), creates the ``shop-landing`` bucket and materialises a tiny simulated
shop into ``s3://shop-landing/landing``. The lake is a local temporary directory.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import urllib.request
from datetime import date, timedelta

import pytest

from jobs.platform.errors import EndpointUnavailableError, TransientError
from jobs.platform.lake import (
    lake_storage,
    landing_hour_prefix,
    landing_storage,
    raw_events_prefix,
    window_for,
)
from jobs.platform.storage import LocalStorage, ObjectInfo, S3Storage, sha256_hex

pytestmark = pytest.mark.integration

BUCKET = "shop-landing"
LANDING_ROOT = f"s3://{BUCKET}/landing"
START = date(2026, 9, 1)
D = date(2026, 9, 3)


@pytest.fixture
def s3_url(s3_server, aws_env):
    """An empty S3 with the landing bucket."""
    request = urllib.request.Request(f"{s3_server}/moto-api/reset", method="POST")
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request).close()
    s3_client(s3_server).create_bucket(Bucket=BUCKET)
    return s3_server


def s3_client(url):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


@pytest.fixture
def config(make_config, s3_url):
    return make_config(storage={"landing_root": LANDING_ROOT, "s3_endpoint_url": s3_url})


@pytest.fixture(scope="module")
def world():
    from jobs.simulator import SimulationSpec, generate

    return generate(SimulationSpec(start_date=START, days=5, users=80, products=40))


@pytest.fixture
def landed(config, world, tmp_path):
    """Materialise the world as known by the end of ``day`` into the S3 landing zone."""
    from jobs.simulator import materialize

    def land(day: date) -> dict:
        return materialize(world, landing_storage(config), config.source.url, day, tmp_path / "truth")

    land(D)
    return land


def manifest(config, day: date) -> dict:
    return json.loads(lake_storage(config).read_bytes(raw_events_prefix(day) + "_manifest.json"))


def s3_object(url: str, landing_key: str) -> bytes:
    return s3_client(url).get_object(Bucket=BUCKET, Key=f"landing/{landing_key}")["Body"].read()


def keys_in_window(config, day: date) -> set[str]:
    landing = landing_storage(config)
    return {
        info.key for hour in window_for(day, config.tz).utc_hours() for info in landing.list(landing_hour_prefix(hour))
    }


def put_late_file(url: str, day: date, tz, lines: list[dict]) -> str:
    """Drop a gzipped JSON Lines file into the last hour folder of ``day``'s window."""
    last_hour = window_for(day, tz).utc_hours()[-1]
    key = landing_hour_prefix(last_hour) + "late-upload-0001.jsonl.gz"
    body = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    s3_client(url).put_object(Bucket=BUCKET, Key=f"landing/{key}", Body=body)
    return key


# --------------------------------------------------------------------------------------------
# collect_events from S3
# --------------------------------------------------------------------------------------------


def test_the_simulated_world_lands_in_s3(config, landed, s3_url):
    listed = s3_client(s3_url).list_objects_v2(Bucket=BUCKET, Prefix="landing/events/")
    assert listed["KeyCount"] > 0
    assert keys_in_window(config, D), "the world has files in D's window"


def test_raw_copies_are_byte_identical_to_the_s3_objects(config, landed, s3_url):
    from jobs.ingest.collect import collect_events

    summary = collect_events(config, D)
    found = manifest(config, D)
    lake = lake_storage(config)
    assert summary["file_count"] == found["file_count"] == len(found["files"]) > 0
    assert found["landing_root"] == LANDING_ROOT
    for entry in found["files"]:
        original = s3_object(s3_url, entry["key"])
        copy = lake.read_bytes(entry["raw_key"])
        assert copy == original, entry["key"]
        assert entry["raw_key"] == raw_events_prefix(D) + entry["key"]


def test_manifest_records_size_sha256_and_line_count_of_every_file(config, landed, s3_url):
    from jobs.ingest.collect import collect_events

    summary = collect_events(config, D)
    found = manifest(config, D)
    for entry in found["files"]:
        original = s3_object(s3_url, entry["key"])
        lines = gzip.decompress(original).decode().splitlines()
        assert entry["size_bytes"] == len(original)
        assert entry["sha256"] == sha256_hex(original)
        assert entry["line_count"] == len(lines)
    assert summary["line_count"] == sum(f["line_count"] for f in found["files"])
    assert summary["byte_count"] == sum(f["size_bytes"] for f in found["files"])
    # every file is from D's window (on time) or an uncollected one from the lookback days (late)
    own = keys_in_window(config, D)
    lookback = {k for offset in (1, 2, 3) for k in keys_in_window(config, D - timedelta(days=offset))}
    for entry in found["files"]:
        assert entry["key"] in own | lookback
        assert entry["is_late_arrival"] is (entry["key"] not in own)


def test_rerunning_a_date_collects_the_same_files_without_duplicates(config, landed):
    from jobs.ingest.collect import collect_events

    collect_events(config, D)
    first = manifest(config, D)
    collect_events(config, D)
    second = manifest(config, D)
    keys = [f["key"] for f in second["files"]]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(f["key"] for f in first["files"])
    assert [(f["key"], f["sha256"]) for f in second["files"]] == [(f["key"], f["sha256"]) for f in first["files"]]
    raw_files = [i.key for i in lake_storage(config).list(raw_events_prefix(D)) if not i.key.endswith("_manifest.json")]
    assert sorted(raw_files) == sorted(f["raw_key"] for f in second["files"])


def test_a_file_claimed_by_one_date_is_not_collected_by_the_next(config, landed):
    from jobs.ingest.collect import collect_events

    collect_events(config, D)
    landed(D + timedelta(days=1))
    collect_events(config, D + timedelta(days=1))
    day_keys = {f["key"] for f in manifest(config, D)["files"]}
    next_keys = {f["key"] for f in manifest(config, D + timedelta(days=1))["files"]}
    assert day_keys and next_keys
    assert day_keys.isdisjoint(next_keys)
    assert next_keys & keys_in_window(config, D + timedelta(days=1))


def test_a_late_file_in_a_collected_folder_is_picked_up_by_the_next_date(config, landed, s3_url):
    from jobs.ingest.collect import collect_events

    collect_events(config, D)
    late_key = put_late_file(s3_url, D, config.tz, [{"event_id": "late-1"}, {"event_id": "late-2"}])
    assert late_key not in {f["key"] for f in manifest(config, D)["files"]}

    summary = collect_events(config, D + timedelta(days=1))
    entries = {f["key"]: f for f in manifest(config, D + timedelta(days=1))["files"]}
    assert late_key in entries
    assert entries[late_key]["is_late_arrival"] is True
    assert entries[late_key]["line_count"] == 2
    assert summary["late_file_count"] >= 1
    assert all(
        not f["is_late_arrival"] for k, f in entries.items() if k in keys_in_window(config, D + timedelta(days=1))
    )
    assert lake_storage(config).read_bytes(entries[late_key]["raw_key"]) == s3_object(s3_url, late_key)

    # re-running D afterwards does not take the late file back from D+1
    collect_events(config, D)
    assert late_key not in {f["key"] for f in manifest(config, D)["files"]}


# --------------------------------------------------------------------------------------------
# LocalStorage and S3Storage honour the same contract
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    url = request.getfixturevalue("s3_url")
    return S3Storage(f"s3://{BUCKET}/some/prefix", endpoint_url=url)


def test_storage_write_then_read_round_trips_bytes(storage):
    payload = bytes(range(256)) * 3
    storage.write_bytes("a/b/c.bin", payload)
    assert storage.read_bytes("a/b/c.bin") == payload
    storage.write_bytes("a/b/c.bin", b"replaced")
    assert storage.read_bytes("a/b/c.bin") == b"replaced"


def test_storage_exists_only_for_written_objects(storage):
    storage.write_bytes("dir/file.txt", b"x")
    assert storage.exists("dir/file.txt")
    assert not storage.exists("dir/other.txt")
    assert not storage.exists("nowhere/file.txt")


def test_storage_list_is_sorted_relative_to_the_root_and_filtered_by_prefix(storage):
    for key, data in [("events/b/2.txt", b"22"), ("events/a/1.txt", b"1"), ("other/3.txt", b"333")]:
        storage.write_bytes(key, data)
    assert storage.list("events/") == [ObjectInfo("events/a/1.txt", 1), ObjectInfo("events/b/2.txt", 2)]
    assert [i.key for i in storage.list()] == ["events/a/1.txt", "events/b/2.txt", "other/3.txt"]
    assert storage.list("missing/") == []


def test_storage_delete_prefix_removes_only_that_prefix_and_counts(storage):
    for key in ("raw/d=1/a", "raw/d=1/b", "raw/d=2/a"):
        storage.write_bytes(key, b"x")
    assert storage.delete_prefix("raw/d=1/") == 2
    assert [i.key for i in storage.list("raw/")] == ["raw/d=2/a"]
    assert storage.delete_prefix("raw/d=1/") == 0


def test_storage_uri_names_the_key_under_the_root(storage):
    uri = storage.uri("x/y.txt")
    assert uri.endswith("x/y.txt")
    assert uri.startswith(storage.root)


def test_storage_prefix_without_slash_means_that_folder_not_its_siblings(storage):
    for key in ("raw/d=1/a", "raw/d=10/a", "raw/d=1x"):
        storage.write_bytes(key, b"x")
    assert [i.key for i in storage.list("raw/d=1")] == ["raw/d=1/a"]
    assert storage.delete_prefix("raw/d=1") == 1
    assert [i.key for i in storage.list("raw/")] == ["raw/d=10/a", "raw/d=1x"]


def test_storage_streams_gzip_objects_byte_for_byte(storage):
    """Landing files are gzip: storage moves their bytes, it never (un)compresses them."""
    payload = gzip.compress(b"line\n" * 1000)
    storage.write_file("x/a.jsonl.gz", io.BytesIO(payload))
    with storage.open_read("x/a.jsonl.gz") as handle:
        assert handle.read() == payload
    assert storage.read_bytes("x/a.jsonl.gz") == payload


class FailingSource(io.RawIOBase):
    """Gives some bytes, then fails like a broken upstream connection."""

    def __init__(self):
        self.calls = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        self.calls += 1
        if self.calls > 1:
            raise OSError("injected: source failed half-way")
        buffer[:4] = b"half"
        return 4


def test_storage_a_failed_write_leaves_the_previous_object(storage):
    storage.write_bytes("k.bin", b"old")
    with pytest.raises(OSError, match="injected"):
        storage.write_file("k.bin", FailingSource())
    assert storage.read_bytes("k.bin") == b"old"
    assert storage.list() == [ObjectInfo("k.bin", 3)]


def test_s3_storage_never_sees_objects_of_a_sibling_root(s3_url):
    lake = S3Storage(f"s3://{BUCKET}/lake", endpoint_url=s3_url)
    sibling = S3Storage(f"s3://{BUCKET}/lake2", endpoint_url=s3_url)
    lake.write_bytes("a.txt", b"1")
    sibling.write_bytes("b.txt", b"2")
    assert lake.list() == [ObjectInfo("a.txt", 1)]
    assert lake.delete_prefix("") == 1
    assert sibling.list() == [ObjectInfo("b.txt", 1)]


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_s3_endpoint_is_a_one_line_transient_error(aws_env):
    endpoint = f"http://127.0.0.1:{closed_loopback_port()}"
    storage = S3Storage(f"s3://{BUCKET}/landing", endpoint_url=endpoint)
    calls = {
        "list": lambda: storage.list("events/"),
        "exists": lambda: storage.exists("a.txt"),
        "read_bytes": lambda: storage.read_bytes("a.txt"),
        "open_read": lambda: storage.open_read("a.txt"),
        "write_bytes": lambda: storage.write_bytes("a.txt", b"x"),
        "delete_prefix": lambda: storage.delete_prefix("events/"),
    }
    for name, call in calls.items():
        with pytest.raises(EndpointUnavailableError) as caught:
            call()
        assert isinstance(caught.value, TransientError), name
        message = str(caught.value)
        assert endpoint in message and "\n" not in message, (name, message)
