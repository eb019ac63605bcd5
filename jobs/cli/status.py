"""``marketing status``: the pipeline at a glance in a terminal (colour when it is one).

The numbers come from :func:`jobs.platform.monitoring.status_report`; this module only lays
them out. ``--json`` prints the report itself.
"""

from __future__ import annotations

import os
import sys

MARKS = {"success": ("✓", "green"), "skipped": ("–", "yellow"), "failed": ("✗", "red"), None: ("·", "dim")}
CODES = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1"}
QUARANTINE_WARN, QUARANTINE_ALERT = 0.01, 0.05  # share of a dataset's rows set aside by clean


def use_colour(stream=None) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def needs_attention(report: dict) -> bool:
    """Anything an operator should act on: the night late, a failure in it, or a stale table."""
    deadline = report["deadline"]
    failed = "failed" in deadline["unfinished"].values()
    return (deadline["passed"] and not deadline["met"]) or failed or bool(report["stale_tables"])


def render(report: dict, colour: bool) -> str:
    def paint(text: str, style: str | None) -> str:
        return f"\033[{CODES[style]}m{text}\033[0m" if colour and style else text

    dates = report["dates"]
    lines = [
        paint(f"Marketing pipeline · {report['shop']} · {report['now']} ({report['timezone']})", "bold"),
        "",
    ]
    deadline = report["deadline"]
    if deadline["met"]:
        when = f", finished {deadline['finished_at']}" if deadline["finished_at"] else ""
        lines.append(paint(f"Night {deadline['business_date']}: done by {deadline['deadline']}{when}", "green"))
    else:
        missing = ", ".join(f"{stage} {state}" for stage, state in deadline["unfinished"].items())
        if deadline["passed"]:
            lines.append(
                paint(f"Night {deadline['business_date']}: NOT done by {deadline['deadline']}: {missing}", "red")
            )
        else:
            style = "red" if "failed" in deadline["unfinished"].values() else "yellow"
            lines.append(
                paint(f"Night {deadline['business_date']}: due by {deadline['deadline']}; to do: {missing}", style)
            )
    lines.append("")

    lines.append(paint("Stage runs", "bold") + "   ✓ success  – skipped  ✗ failed  · not run")
    width = max([len(stage) for stage in report["runs"]] + [5])
    lines.append(" " * (width + 2) + " ".join(d[5:] for d in dates) + "   last run   duration  peak MiB")
    for stage, by_date in report["runs"].items():
        cells = " ".join(paint(f"{MARKS[by_date[d]][0]:^5}", MARKS[by_date[d]][1]) for d in dates)
        latest = report["latest"].get(stage, {})
        peak = latest.get("peak_rss_mb")
        lines.append(
            f"{stage:<{width}}  {cells}   {latest.get('date', '')[5:]:>8}  {latest.get('duration_s', 0):>7.1f} s"
            f"  {'' if peak is None else f'{peak:>8.0f}'}"
        )
    if not report["runs"]:
        lines.append(paint("  no stage has run in this window", "dim"))
    lines.append("")

    lines.append(paint("Failures", "bold"))
    for failure in report["failures"] or []:
        lines.append(paint(f"  {failure['date']} {failure['stage']}: {failure['error']}", "red"))
    if not report["failures"]:
        lines.append(paint("  none", "green"))
    lines.append("")

    lines.append(paint("Stale tables", "bold"))
    for table in report["stale_tables"]:
        lines.append(
            paint(f"  {table['table']}: newest {table['newest_date']} (due {table['due']}, {table['stage']})", "red")
        )
    if not report["stale_tables"]:
        lines.append(paint("  none", "green"))
    lines.append("")

    lines.append(paint("Quarantined share and failed checks (errors/warnings) by dataset", "bold"))
    by_dataset: dict[str, dict[str, dict]] = {}
    for row in report["quality"]:
        by_dataset.setdefault(row["dataset"], {})[row["date"]] = row
    if by_dataset:
        name = max(len(d) for d in by_dataset)
        lines.append(" " * (name + 2) + " ".join(f"{d[5:]:>11}" for d in dates))
        for dataset, by_date in sorted(by_dataset.items()):
            cells = []
            for day in dates:
                row = by_date.get(day)
                if row is None:
                    cells.append(paint(f"{'·':>11}", "dim"))
                    continue
                rate = row["quarantine_rate"]
                share = "" if rate is None else f"{rate:.1%}"
                text = f"{share} {row['failed_errors']}/{row['failed_warnings']}".strip()
                style = (
                    "red"
                    if row["failed_errors"] or (rate or 0) >= QUARANTINE_ALERT
                    else "yellow"
                    if row["failed_warnings"] or (rate or 0) >= QUARANTINE_WARN
                    else None
                )
                cells.append(paint(f"{text:>11}", style))
            lines.append(f"{dataset:<{name}}  " + " ".join(cells))
    else:
        lines.append(paint("  no validated dates in this window", "dim"))
    return "\n".join(lines)
