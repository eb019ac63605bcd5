"""The whole project stays `ruff check` and `ruff format` clean (as `make lint` checks)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_the_project_is_ruff_clean(command):
    if not RUFF.exists():
        pytest.skip("ruff is not installed in this environment")
    result = subprocess.run([str(RUFF), *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


# Settings a later stage checks its own settings against (campaign audiences name segments and
# tags): reading a definition, not running a sibling's code.
SHARED_SETTINGS = ("jobs.customers.segments_config", "jobs.customers.tags_config")


def test_no_stage_imports_a_sibling_stage():
    """What two stages share lives in jobs/platform/ (ARCHITECTURE.md, Layout)."""
    stages = ("ingest", "customers", "recommender", "activation")
    offenders = []
    for stage in stages:
        for path in (ROOT / "jobs" / stage).glob("*.py"):
            text = path.read_text()
            for allowed in SHARED_SETTINGS:
                text = text.replace(f"from {allowed} import", "")
            offenders += [
                f"{path.relative_to(ROOT)} imports jobs.{other}"
                for other in stages
                if other != stage and (f"from jobs.{other}" in text or f"import jobs.{other}" in text)
            ]
    assert not offenders, offenders
