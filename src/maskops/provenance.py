"""Where a model came from: the git commit of the source tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(repo: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when tracked files changed), or "" outside a repo."""
    cwd = repo or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("-dirty" if dirty else "")
