"""The landing files: gzipped JSON Lines event files under ``events/date=YYYY-MM-DD/hour=HH/``
(UTC write hour) in the landing storage. A file is written once its write hour has ended and
never rewritten, so writing up to one day and then the next gives the same files as writing up
to the later day once."""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.platform.storage import Storage
from jobs.simulator.dirt import _render_lines
from jobs.simulator.spec import NS_PER_HOUR, World


def _write_landing(world: World, landing: Storage, end_ns: int) -> dict[str, int]:
    """Write the landing files complete by ``end_ns`` that the storage does not hold yet."""
    files = world.files
    hour_end = files["hour_start"].array.asi8 + NS_PER_HOUR
    known = files[hour_end <= end_ns]
    existing = {info.key for info in landing.list("events/")}
    todo = known[~known["key"].isin(existing)]
    summary = {
        "files_known": len(known),
        "files_written": 0,
        "lines_written": 0,
        "bytes_written": 0,
    }
    if todo.empty:
        return summary
    wanted = np.zeros(len(files), dtype=bool)
    wanted[todo["file_idx"].to_numpy()] = True
    lines = world.lines
    selected = lines[wanted[lines["file_idx"].to_numpy()]]
    f = selected["file_idx"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, f[1:] != f[:-1], True])  # file starts, then the end
    keys = files["key"].to_numpy()

    def put(key: str, text: pa.Buffer) -> int:
        data = gzip.compress(memoryview(text), compresslevel=6, mtime=0)
        landing.write_bytes(key, data)
        return len(data)

    futures = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        first = 0
        while first < len(bounds) - 1:  # chunks of whole files, ~200k lines each
            last = int(np.searchsorted(bounds, bounds[first] + 200_000, side="right")) - 1
            last = min(max(last, first + 1), len(bounds) - 1)
            lo, hi = bounds[first], bounds[last]
            text = _render_lines(world, selected.iloc[lo:hi])
            offsets = pa.array(bounds[first : last + 1] - lo, pa.int32())
            per_file = pc.binary_join(pa.ListArray.from_arrays(offsets, text), "")
            for i in range(last - first):
                key = keys[f[bounds[first + i]]]
                futures.append(pool.submit(put, key, per_file[i].as_buffer()))
            summary["lines_written"] += int(hi - lo)
            first = last
        summary["bytes_written"] = sum(future.result() for future in futures)
    summary["files_written"] = len(futures)
    return summary
