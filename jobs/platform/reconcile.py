"""Nothing is lost: every input row is clean, quarantined or a counted duplicate."""

from __future__ import annotations

from datetime import date

from jobs.platform.errors import ReconciliationError


def reconcile(dataset: str, logical_date: date, input_rows: int, clean: int, quarantined: int, duplicates: int) -> None:
    """Raise :class:`ReconciliationError` unless input = clean + quarantined + duplicates."""
    accounted = clean + quarantined + duplicates
    if input_rows != accounted:
        raise ReconciliationError(
            f"{dataset} {logical_date}: input {input_rows} != clean {clean} + quarantined "
            f"{quarantined} + duplicates {duplicates} (= {accounted}); "
            f"{input_rows - accounted:+d} rows unaccounted for"
        )
