"""Where an output came from: the code version and a hash of the settings that made it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from jobs.platform.config import PROJECT_ROOT


def code_version() -> str:
    """The git commit when there is one, else a hash of the project's Python code."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        for path in sorted([*(PROJECT_ROOT / "models").rglob("*.py"), *(PROJECT_ROOT / "jobs").rglob("*.py")]):
            digest.update(path.read_bytes())
        return "src-" + digest.hexdigest()[:12]


def files_hash(*paths: str | Path) -> str:
    """sha256 over the bytes of settings files (e.g. the campaigns file), in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()
