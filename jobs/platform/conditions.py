"""The condition language of tags and campaign audiences: data, not code.

A condition is ``{field: {op: value, ...}, ...}``; every test of every field must hold. Ops by
the field's kind:

- ``number``   ``eq ne lt lte gt gte in not_in is_null``, and ``top`` / ``bottom``: the value is
               among the highest (lowest) given share of the field's values that night (``top:
               0.2``: the best fifth), a threshold relative to the shop instead of a constant
- ``string``   ``eq ne in not_in is_null``
- ``boolean``  ``eq ne is_null``
- ``list``     ``in not_in is_null``: a comma-joined multi-valued field (a top-N tag); ``in``
               holds when any of its values is listed, ``not_in`` when none is

A missing value (null) satisfies nothing but ``is_null: true``, as in SQL. Conditions are
checked against the fields' kinds when settings load, so a typo is a one-line error before any
data is read. :func:`mask` evaluates one on a pandas frame; tags compile the same language to
Spark columns (``jobs.customers.tags``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

OPS = {
    "number": {"eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "is_null", "top", "bottom"},
    "string": {"eq", "ne", "in", "not_in", "is_null"},
    "boolean": {"eq", "ne", "is_null"},
    "list": {"in", "not_in", "is_null"},
}
_PYTHON_TYPES = {"number": (int, float), "string": (str,), "boolean": (bool,), "list": (str,)}
Condition = dict[str, dict[str, Any]]


def check_condition(
    when: Condition, kinds: Mapping[str, str], allowed: Mapping[str, set[str]] | None = None, noun: str = "field"
) -> None:
    """Raise ``ValueError`` naming the field when ``when`` uses an unknown field (``noun``: what
    the caller calls its fields), an operator that does not fit the field's kind, a value of the
    wrong type, or (``allowed``) a value the field never takes."""
    for field, tests in when.items():
        if field not in kinds:
            raise ValueError(f"unknown {noun} {field!r}; known: {', '.join(kinds)}")
        kind = kinds[field]
        if not isinstance(tests, dict) or not tests:
            raise ValueError(f"{field}: expected a mapping of operator to value, e.g. {{gte: 1}}")
        for op, value in tests.items():
            if op not in OPS[kind]:
                raise ValueError(f"{field}: operator {op!r} does not apply to a {kind}; use {sorted(OPS[kind])}")
            if op == "is_null":
                if not isinstance(value, bool):
                    raise ValueError(f"{field}: is_null needs true or false")
                continue
            if op in ("top", "bottom"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                    raise ValueError(f"{field}: {op} needs a share of the customers, above 0 and at most 1")
                continue
            if op in ("in", "not_in") and not isinstance(value, list):
                raise ValueError(f"{field}: {op} needs a list")
            values = value if op in ("in", "not_in") else [value]
            expected = _PYTHON_TYPES[kind]
            for item in values:
                if not isinstance(item, expected) or (kind == "number" and isinstance(item, bool)):
                    raise ValueError(f"{field}: {item!r} is not a {kind}")
                if allowed and field in allowed and item not in allowed[field]:
                    raise ValueError(f"{field}: unknown value {item!r}; known: {', '.join(sorted(allowed[field]))}")


def _test(column: pd.Series, kind: str, op: str, value: Any) -> pd.Series:
    present = column.notna()
    if op == "is_null":
        return ~present if value else present
    if kind == "list":
        listed = set(value)
        values = column.fillna("").astype(str).str.split(",")
        hit = values.map(lambda items: any(item in listed for item in items))
        return present & (hit if op == "in" else ~hit)
    if op in ("top", "bottom"):  # rank among the present values: 1 is the highest (lowest)
        rank = column.rank(ascending=op == "bottom", method="min")
        return present & (rank <= value * present.sum()).fillna(False)
    if op == "in":
        return present & column.isin(value)
    if op == "not_in":
        return present & ~column.isin(value)
    compare = {"eq": "eq", "ne": "ne", "lt": "lt", "lte": "le", "gt": "gt", "gte": "ge"}[op]
    return present & getattr(column, compare)(value).fillna(False).astype(bool)


def mask(frame: pd.DataFrame, when: Condition, kinds: Mapping[str, str]) -> pd.Series:
    """Rows of ``frame`` for which every test of ``when`` holds (a checked condition)."""
    result = pd.Series(True, index=frame.index)
    for field, tests in when.items():
        for op, value in tests.items():
            result &= _test(frame[field], kinds[field], op, value)
    return result
