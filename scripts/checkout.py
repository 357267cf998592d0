"""Which lmzip a script measured: the checkout's commit, for the labels of its results."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit(root: Path = ROOT) -> str:
    """Short HEAD of the checkout at ``root`` (this one by default), ``-dirty`` when its
    lmzip/ has uncommitted changes ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        diff = ["git", "diff", "--quiet", "HEAD", "--", "lmzip"]
        dirty = subprocess.run(diff, cwd=root, capture_output=True).returncode
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "") if head.returncode == 0 else "unknown"
