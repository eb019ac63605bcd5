"""The ``marketing`` command: helpful --help, and one-line ``error:`` messages with exit code 2
for bad arguments and bad configuration (never a traceback).

Every case runs the installed console script in a subprocess, from a directory outside the
project and without any inherited MKT_* settings, the way a person would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.platform.config import PROJECT_ROOT

SCRIPT = Path(sys.executable).with_name("marketing")
SUBCOMMANDS = (
    "simulate",
    "run",
    "demo",
    "score-customers",
    "evaluate-recommender",
    "models",
    "airflow",
    "config",
    "tags",
    "campaigns",
)


def marketing(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "jobs.cli.main"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MKT_")}
    environ.update(env)
    return subprocess.run([*command, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def sandbox(tmp_path: Path) -> dict[str, str]:
    """Settings that keep a command away from the project's data, should it ever get that far."""
    return {
        "MKT_STORAGE__LANDING_ROOT": str(tmp_path / "landing"),
        "MKT_STORAGE__LAKE_ROOT": str(tmp_path / "lake"),
        "MKT_STORAGE__REPORTS_ROOT": str(tmp_path / "reports"),
        "MKT_STORAGE__STATE_ROOT": str(tmp_path / "state"),
        "MKT_SOURCE__URL": f"sqlite:///{tmp_path / 'source.db'}",
        "MKT_WAREHOUSE__URL": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
    }


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line naming every fragment, no traceback, nothing on stdout."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------------------------


def test_top_level_help_lists_every_subcommand_and_the_configuration(tmp_path):
    proc = marketing("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: marketing")
    for name in SUBCOMMANDS:
        assert name in proc.stdout
    assert "MKT_" in proc.stdout and "pipeline.yaml" in proc.stdout


@pytest.mark.parametrize(
    "subcommand, words",
    [
        ("simulate", ["--days", "--users", "--until", "landing_root", "ground truth"]),
        ("run", ["--date", "--to", "--stage", "--full-reload", "collect_events", "validate"]),
        ("demo", ["--nights", "--no-airflow"]),
        ("airflow", ["airflow", "dags test"]),
        ("config", ["configuration"]),
        ("tags", ["tags.yaml", "features", "one-line error"]),
        ("campaigns", ["campaigns.yaml", "audience fields", "one-line error"]),
        (
            "evaluate-recommender",
            ["--interactions", "--train", "--protocol", "temporal", "--test-ratio", "--seed", "--k", "--out-dir"],
        ),
        ("models", ["list", "promote", "rollback", "registry"]),
    ],
)
def test_each_subcommand_help_explains_itself(tmp_path, subcommand, words):
    proc = marketing(subcommand, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: marketing {subcommand}")
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for word in words:
        assert word in text, word


def test_without_a_command_the_usage_is_shown_and_exit_is_2(tmp_path):
    proc = marketing(cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage: marketing" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "--date", "2026-13-01"], ["argument --date", "'2026-13-01'", "YYYY-MM-DD"]),
        (["run", "--date", "yesterday"], ["argument --date", "'yesterday'"]),
        (["run"], ["--date"]),
        (["simulate", "--users", "-5"], ["argument --users", "must be positive: -5"]),
        (["simulate", "--days", "0"], ["argument --days", "must be positive"]),
        (["simulate", "--users", "many"], ["argument --users", "not an integer"]),
        (["simulate", "--dirt-rate", "0.9"], ["argument --dirt-rate", "between 0 and 0.5"]),
        (["simulate", "--until", "2026-02-30"], ["argument --until"]),
        (["deploy"], ["invalid choice", "'deploy'"]),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(tmp_path, args, fragments):
    assert_one_line_error(marketing(*args, cwd=tmp_path, **sandbox(tmp_path)), *fragments)


def test_an_unknown_stage_exits_2_naming_it_and_the_choices(tmp_path):
    line = assert_one_line_error(
        marketing("run", "--date", "2026-10-01", "--stage", "nope", cwd=tmp_path, **sandbox(tmp_path)),
        "'nope'",
        "collect_events",
    )
    assert line.startswith("error: unknown stage")


def test_a_range_ending_before_it_starts_exits_2(tmp_path):
    line = assert_one_line_error(
        marketing("run", "--date", "2026-10-02", "--to", "2026-10-01", cwd=tmp_path, **sandbox(tmp_path)),
        "--to",
        "2026-10-01",
    )
    assert line.startswith("error:")


# --------------------------------------------------------------------------------------------
# Bad configuration
# --------------------------------------------------------------------------------------------


def test_a_bad_environment_setting_exits_2_naming_the_key(tmp_path):
    proc = marketing("config", cwd=tmp_path, MKT_SPARK__SHUFFLE_PARTITIONS="x")
    line = assert_one_line_error(proc, "spark.shuffle_partitions", "'x'")
    assert line.startswith("error:")
    assert proc.stderr.strip() == line


def test_a_bad_setting_fails_before_any_stage_runs(tmp_path):
    settings = {**sandbox(tmp_path), "MKT_STORAGE__LANDING_ROOT": "ftp://x/y"}
    proc = marketing("run", "--date", "2026-10-01", "--stage", "collect_events", cwd=tmp_path, **settings)
    line = assert_one_line_error(proc, "storage.landing_root")
    assert proc.stderr.strip() == line


def test_an_unknown_setting_exits_2_naming_it(tmp_path):
    proc = marketing("config", cwd=tmp_path, MKT_SPARK__SHUFFLE_PARTITION="4")
    assert_one_line_error(proc, "unknown setting", "spark.shuffle_partition")


def test_a_missing_config_file_exits_2_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    assert_one_line_error(marketing("--config", str(missing), "config", cwd=tmp_path), str(missing))
    assert_one_line_error(marketing("config", cwd=tmp_path, MKT_CONFIG=str(missing)), str(missing))


def test_an_invalid_config_file_exits_2_naming_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark:\n  shuffle_partitions: [\n")
    assert_one_line_error(marketing("--config", str(bad), "config", cwd=tmp_path), "bad.yaml", "line")


def test_config_prints_the_effective_configuration_with_overrides(tmp_path):
    proc = marketing("config", cwd=tmp_path, MKT_SPARK__SHUFFLE_PARTITIONS="3")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["spark"]["shuffle_partitions"] == 3
    assert shown["warehouse"]["schema"] == "main"  # the documented key, not the Python attribute
    # relative paths are resolved against the project, wherever the command is run from
    assert shown["storage"]["lake_root"] == str(PROJECT_ROOT / "data" / "lake")


def test_tags_lists_features_and_tags_and_rejects_a_bad_definition_in_one_line(tmp_path):
    proc = marketing("tags", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "refund_rate" in proc.stdout and "spending_power" in proc.stdout and "interest_category" in proc.stdout
    bad = tmp_path / "tags.yaml"
    bad.write_text(
        "tags:\n  - {name: vip, description: d, source: orders, kind: rules,\n"
        "     rules: [{value: x, when: {spend: {gte: 1000}}}]}\n"
    )
    proc = marketing("tags", cwd=tmp_path, MKT_CUSTOMERS__TAGS_FILE=str(bad))
    assert_one_line_error(proc, str(bad), "tags.0(vip)", "unknown feature 'spend'")


def test_campaigns_lists_fields_and_campaigns_and_rejects_a_bad_definition_in_one_line(tmp_path):
    proc = marketing("campaigns", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "abandoned_cart" in proc.stdout and "tag_spending_power" in proc.stdout
    assert "winback_high_value" in proc.stdout and "holdout 10%" in proc.stdout
    bad = tmp_path / "campaigns.yaml"
    bad.write_text(
        "campaigns:\n  - {id: vip, name: V, owner: o, channel: email, priority: 1,\n"
        "     audience: {rfm_group: {eq: Champs}}}\n"
    )
    proc = marketing("campaigns", cwd=tmp_path, MKT_ACTIVATION__CAMPAIGNS_FILE=str(bad))
    assert_one_line_error(proc, str(bad), "campaigns.0(vip).audience", "unknown value 'Champs'")
