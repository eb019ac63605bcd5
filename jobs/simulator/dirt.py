"""The landing lines: when and into which hourly file each event is written (with late app
upload batches), which lines are dirty, and their JSON text. Dirt is scaled by
``SimulationSpec.dirt_rate`` (0 disables all of it, including the valid but messy texture):
each dirty line has exactly one defect, applied to a distinct base event. ``duplicate`` lines
are exact copies of a valid line written in the same or a later file; the rejected kinds are
``malformed_json``, ``missing_required_field``, ``wrong_type``, ``invalid_timestamp``,
``invalid_enum`` and ``unknown_product_id``. Valid but messy: mixed UTC offsets in
``event_ts``, unknown extra fields, bot sessions (100-300 product views in a couple of minutes,
made with the sessions) and late files (an app upload batch written 1-2 days after its events).
The source dirt (orders with a negative or absurd ``total_amount``, order items with an unknown
``product_id``) is made with the orders."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jobs.simulator.spec import (
    BAD_ENUM,
    BAD_TS,
    DUPLICATE,
    MALFORMED,
    MISSING,
    NS_PER_HOUR,
    NS_PER_MIN,
    NS_PER_S,
    REJECT_KINDS,
    REQUIRED_FIELDS,
    UNKNOWN_PRODUCT,
    UNKNOWN_PRODUCT_ID_BASE,
    VALID,
    WRONG_TYPE,
    SimulationSpec,
    World,
    _Calendar,
    _local_days,
    _ms,
    _rng,
    _utc,
    _wall_ns,
)

# --------------------------------------------------------------------------------------------
# Landing plan: write times, files, dirt
# --------------------------------------------------------------------------------------------


def _plan_landing(
    spec: SimulationSpec, cal: _Calendar, ev: dict, channel: np.ndarray, is_bot: np.ndarray
) -> tuple[pd.DataFrame, dict]:
    """Decide for every event when and into which file it is written, and every dirty line."""
    rng = _rng(spec, "landing")
    n = len(ev["ns"])
    messy = spec.dirt_rate > 0
    delay = np.clip(rng.lognormal(np.log(25), 1.1, n), 1, 3000) * NS_PER_S
    write_ns = _ms(ev["ns"] + delay)
    group = np.zeros(n, dtype=np.int64)

    if messy and n:  # late files: an app upload batch of one hour arrives 1-2 days later
        event_hour = ev["ns"] // NS_PER_HOUR
        hours = np.unique(event_hour)
        k = max(1, round(len(hours) * min(0.5, 0.5 * spec.dirt_rate)))
        chosen = np.sort(rng.choice(hours, size=min(k, len(hours)), replace=False))
        upload = _ms(chosen * NS_PER_HOUR + rng.uniform(25, 47, len(chosen)) * NS_PER_HOUR)
        batch = np.searchsorted(chosen, event_hour)
        in_batch = (
            (batch < len(chosen))
            & (chosen[np.minimum(batch, len(chosen) - 1)] == event_hour)
            & (channel != 0)
            & ~is_bot
        )
        write_ns[in_batch] = upload[batch[in_batch]]
        group[in_batch] = 3 + batch[in_batch]

    write_hour = write_ns // NS_PER_HOUR
    hours, inverse = np.unique(write_hour, return_inverse=True)
    parts = rng.choice(np.array([1, 2, 3]), size=len(hours), p=[0.55, 0.3, 0.15])
    normal = group == 0
    group[normal] = (rng.random(n) * parts[inverse])[normal].astype(np.int64)
    file_code = write_hour * (1 << 24) + group
    codes, file_of_event = np.unique(file_code, return_inverse=True)
    file_hour = codes >> 24
    _, first_of_hour, hour_inv = np.unique(file_hour, return_index=True, return_inverse=True)
    part_no = np.arange(len(codes)) - first_of_hour[hour_inv]
    hour_start = file_hour * NS_PER_HOUR
    stamp = pd.DatetimeIndex(hour_start.view("datetime64[ns]"))
    keys = [
        f"events/date={t:%Y-%m-%d}/hour={t:%H}/events-{t:%Y%m%d%H}-{p}.jsonl.gz"
        for t, p in zip(stamp, part_no, strict=True)
    ]
    logical = _local_days(hour_start, cal.tz)
    files = pd.DataFrame(
        {
            "file_idx": np.arange(len(codes)),
            "key": keys,
            "hour_start": _utc(hour_start),
            "write_date": stamp.date,
            "local_logical_date": pd.DatetimeIndex(logical).date,
            "part": part_no,
            "is_late_batch": (codes & ((1 << 24) - 1)) >= 3,
        }
    )

    kind = np.zeros(n, dtype=np.int8)
    dup_of = np.zeros(0, dtype=np.int64)
    if messy and n:
        kind, dup_of = _assign_dirt(rng, spec.dirt_rate, ev, is_bot)
    ts_style = np.zeros(n, dtype=np.int8)
    extra = np.zeros(n, dtype=np.int8)
    if messy:
        other = rng.random(n) < min(0.3, spec.dirt_rate * 4 / 3)
        ts_style[other] = rng.choice(np.arange(1, 5), size=int(other.sum()), p=[0.4, 0.2, 0.25, 0.15])
        has_extra = rng.random(n) < min(0.3, spec.dirt_rate * 2 / 3)
        extra[has_extra] = np.where(channel[has_extra] == 1, 1, 2 + (rng.random(int(has_extra.sum())) < 0.5))
    variant = rng.integers(0, 1 << 30, n)

    # duplicates: the same file, or a later one (client retries)
    n_files = len(codes)
    step = rng.choice(np.array([0, 0, 0, 1, 2, 3]), size=len(dup_of))
    dup_file = np.minimum(file_of_event[dup_of] + step, n_files - 1)
    same = dup_file == file_of_event[dup_of]
    dup_key = np.where(same, write_ns[dup_of] + 1, hour_start[dup_file] + NS_PER_HOUR - 1)

    event_row = np.r_[np.arange(n), dup_of]
    lines = pd.DataFrame(
        {
            "event_row": event_row,
            "file_idx": np.r_[file_of_event, dup_file].astype(np.int64),
            "kind": np.r_[kind, np.full(len(dup_of), DUPLICATE, np.int8)],
            "order_key": np.r_[write_ns, dup_key],
            "ts_style": ts_style[event_row],
            "extra": extra[event_row],
            "variant": variant[event_row],
            "session_idx": ev["sess"][event_row],
        }
    )
    order = np.lexsort((np.arange(len(lines)), lines["order_key"].to_numpy(), lines["file_idx"].to_numpy()))
    lines = lines.iloc[order].reset_index(drop=True)
    plan = {"write_ns": write_ns, "file_of_event": file_of_event, "kind": kind, "files": files}
    return lines, plan


def _assign_dirt(rng: np.random.Generator, rate: float, ev: dict, is_bot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One defect per chosen base event; duplicates copy other, valid events."""
    n = len(ev["ns"])
    kind = np.zeros(n, dtype=np.int8)
    eligible = np.flatnonzero(~is_bot)
    perm = rng.permutation(eligible)
    per_kind = rate / len(REJECT_KINDS)
    with_product = perm[ev["product"][perm] >= 0]
    k = int(rng.binomial(len(with_product), per_kind))
    kind[with_product[:k]] = UNKNOWN_PRODUCT
    rest = perm[kind[perm] == VALID]
    start = 0
    for code in (MALFORMED, MISSING, WRONG_TYPE, BAD_TS, BAD_ENUM):
        k = int(rng.binomial(len(eligible), per_kind))
        kind[rest[start : start + k]] = code
        start += k
    k = int(rng.binomial(len(eligible), rate))
    dup_of = np.sort(rest[start : start + k])
    return kind, dup_of


# --------------------------------------------------------------------------------------------
# Rendering landing lines
# --------------------------------------------------------------------------------------------

BAD_PRICES = ("free", "N/A", "n/a", "--")
BAD_USER_IDS = ("abc", "user_x", "xyz")
BAD_TIMESTAMPS = (
    "yesterday",
    "not-a-timestamp",
    "1970-01-01T08:00:00+08:00",
    "2099-12-31T23:59:59+08:00",
    "2026-13-45T25:61:00+08:00",
)
BAD_EVENT_TYPES = ("pageview2", "click", "tap")
BAD_CHANNELS = ("tv", "pos", "kiosk")
OTHER_OFFSETS = ((0, "Z"), (0, "+00:00"), (9 * 60, "+09:00"), (-5 * 60, "-05:00"))


def _quoted(values: np.ndarray) -> pa.Array:
    """JSON text of nullable strings (our strings never need escaping)."""
    arr = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    return pc.fill_null(pc.binary_join_element_wise('"', arr, '"', ""), "null")


def _number(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(values, pa.string()), "null")


def _enum_text(column: pd.Series, rows: np.ndarray) -> pa.Array:
    """JSON text of a categorical column: quoted category, or null."""
    array = column.array
    texts = pa.array([f'"{c}"' for c in array.categories] + ["null"], pa.string())
    codes = array.codes[rows]
    return texts.take(pa.array(np.where(codes < 0, len(texts) - 1, codes)))


def _timestamps(event_ns: np.ndarray, style: np.ndarray, tz: str) -> pa.Array:
    """ISO-8601 text with an offset: the shop's offset, or (style > 0) Z/+00:00/other offsets."""
    wall = _wall_ns(event_ns, tz)
    shift = wall - event_ns
    offset_min = shift // NS_PER_MIN
    suffixes = []
    code = np.zeros(len(event_ns), dtype=np.int64)
    for minutes in np.unique(offset_min):
        sign = "+" if minutes >= 0 else "-"
        code[offset_min == minutes] = len(suffixes)
        suffixes.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    for style_code, (minutes, text) in enumerate(OTHER_OFFSETS, start=1):
        mask = style == style_code
        shift[mask] = minutes * NS_PER_MIN
        code[mask] = len(suffixes)
        suffixes.append(text)
    local = (event_ns + shift).view("datetime64[ns]").astype("datetime64[ms]")
    text = pa.array(np.datetime_as_string(local, unit="ms"), pa.string())
    suffix = pa.array(suffixes, pa.string()).take(pa.array(code))
    return pc.binary_join_element_wise(text, suffix, "")


def _session_segments(ev: pd.DataFrame, rows: np.ndarray, sess: np.ndarray) -> tuple[pa.Array, ...]:
    """Per line, the parts that are constant within a session, rendered once per session."""
    _, first, inverse = np.unique(sess, return_index=True, return_inverse=True)
    srow = rows[first]
    who = pc.binary_join_element_wise(
        _number(pa.array(ev["user_id"].array[srow], type=pa.int64())),
        ',"anonymous_id":"', pa.array(ev["anonymous_id"].to_numpy()[srow], pa.string()),
        '","session_id":"', pa.array(ev["session_id"].to_numpy()[srow], pa.string()),
        '"',
        "",
    )  # fmt: skip
    where = pc.binary_join_element_wise(
        ',"channel":', _enum_text(ev["channel"], srow),
        ',"device":', _enum_text(ev["device"], srow),
        ',"utm_source":', _enum_text(ev["utm_source"], srow),
        "",
    )  # fmt: skip
    take = pa.array(inverse)
    return who.take(take), where.take(take)


EXTRA_FIELDS = ("}\n", ',"app_version":"5.2.1"}\n', ',"experiment":"a"}\n', ',"experiment":"b"}\n')


def _render_lines(world: World, lines: pd.DataFrame) -> pa.Array:
    """The JSON text of landing lines (each ending in a newline), in order, dirt applied."""
    ev = world.events
    rows = lines["event_row"].to_numpy()
    who, where = _session_segments(ev, rows, lines["session_idx"].to_numpy())
    ts = _timestamps(ev["event_ts"].array.asi8[rows], lines["ts_style"].to_numpy(), world.spec.timezone)
    product = pa.array(ev["product_id"].array[rows], type=pa.int64())
    price = pa.array(ev["price"].to_numpy()[rows], type=pa.float64(), from_pandas=True)
    tail = pa.array(EXTRA_FIELDS, pa.string()).take(pa.array(lines["extra"].to_numpy()))
    text = pc.binary_join_element_wise(
        '{"event_id":"', pa.array(ev["event_id"].to_numpy()[rows], pa.string()),
        '","event_type":', _enum_text(ev["event_type"], rows),
        ',"event_ts":"', ts,
        '","user_id":', who,
        ',"product_id":', _number(product),
        ',"query":', _quoted(ev["query"].to_numpy()[rows]),
        where,
        ',"price":', _number(price),
        tail,
        "",
    )  # fmt: skip
    kind = lines["kind"].to_numpy()
    dirty = kind >= MALFORMED
    if dirty.any():
        variant = lines["variant"].to_numpy()[dirty]
        originals = text.filter(pa.array(dirty)).to_pylist()
        corrupted = [
            _corrupt(line[:-1], int(k), int(v)) + "\n"
            for line, k, v in zip(originals, kind[dirty], variant, strict=True)
        ]
        text = pc.replace_with_mask(text, pa.array(dirty), pa.array(corrupted, pa.string()))
    return text


def _corrupt(line: str, kind: int, variant: int) -> str:
    """Apply exactly one defect of ``kind`` to a valid JSON line."""
    if kind == MALFORMED:
        if variant % 2:
            return line[:-1] + ",}"  # trailing comma
        return line[: 10 + variant % max(1, len(line) - 12)]  # truncated
    obj: dict[str, Any] = json.loads(line)
    if kind == MISSING:
        name = REQUIRED_FIELDS[variant % len(REQUIRED_FIELDS)]
        if (variant // len(REQUIRED_FIELDS)) % 2:
            obj[name] = None
        else:
            del obj[name]
    elif kind == WRONG_TYPE:
        if obj.get("price") is not None and variant % 2 == 0:
            obj["price"] = BAD_PRICES[(variant // 2) % len(BAD_PRICES)]
        else:
            obj["user_id"] = BAD_USER_IDS[(variant // 2) % len(BAD_USER_IDS)]
    elif kind == BAD_TS:
        obj["event_ts"] = BAD_TIMESTAMPS[variant % len(BAD_TIMESTAMPS)]
    elif kind == BAD_ENUM:
        if variant % 2:
            obj["channel"] = BAD_CHANNELS[(variant // 2) % len(BAD_CHANNELS)]
        else:
            obj["event_type"] = BAD_EVENT_TYPES[(variant // 2) % len(BAD_EVENT_TYPES)]
    elif kind == UNKNOWN_PRODUCT:
        obj["product_id"] = UNKNOWN_PRODUCT_ID_BASE + variant % 100_000
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
