"""Which lmzip a script measured: the checkout's commit, for the labels of its results."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short HEAD of this checkout, ``-dirty`` when lmzip/ has uncommitted changes ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "lmzip"], cwd=ROOT).returncode
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "") if head.returncode == 0 else "unknown"
