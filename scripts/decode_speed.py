"""`lmzip -c` and `lmzip -d` wall times, one source tree against others, in one run.

    python scripts/decode_speed.py [--tree DIR ...] [--file F[:BYTES] ...] [--repeat 1] [--json OUT]

Each input is compressed and decompressed (defaults, start-up included, `-c`/`-d -c`
through stdin/stdout) by this checkout and by every --tree (another lmzip checkout,
e.g. `git worktree add /tmp/base <commit>`), alternately, so a busy machine slows all
alike; the best of --repeat runs is kept. Round trips are checked. Default inputs:
alice29.txt and its first 16 KiB (one chunk), the two cases of decompression speed
in README. Prints a Markdown table, a row per tree (its commit, -dirty when its lmzip/
has uncommitted changes) and input: seconds, -d / -c, and KB/s of decompression.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from checkout import commit  # scripts/checkout.py

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_FILES = [f"{CORPUS / 'alice29.txt'}:16384", str(CORPUS / "alice29.txt")]


def lmzip(tree: Path, args: list[str], data: bytes) -> tuple[bytes, float]:
    """stdout and wall seconds of `python -m lmzip ARGS` run from ``tree``'s sources. The
    working directory is the tree too: `python -m` puts it first on sys.path, so run from
    another checkout it would import that one's lmzip whatever PYTHONPATH says."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "lmzip", *args], input=data, capture_output=True, env=env, cwd=tree, check=False
    )
    if p.returncode != 0:
        raise SystemExit(f"{tree}: lmzip {' '.join(args)}: {p.stderr.decode().strip()}")
    return p.stdout, time.perf_counter() - t0


def imported_from(tree: Path) -> Path:
    """Where `python -m lmzip` run as lmzip() runs it finds the package."""
    code = "import lmzip, pathlib; print(pathlib.Path(lmzip.__file__).resolve().parent.parent)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tree, check=True)
    return Path(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, action="append", default=[], help="another lmzip checkout to time")
    ap.add_argument("--file", action="append", help="FILE or FILE:BYTES (its first BYTES)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    for tree in trees:  # each tree must time its own code
        if (found := imported_from(tree)) != tree.resolve():
            raise SystemExit(f"{tree}: python imports lmzip from {found}, not from the tree")
    rows = []
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, best of {args.repeat}")
    print("| tree | input | bytes | archive | -c s | -d s | -d / -c | -d KB/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec in args.file or DEFAULT_FILES:
        path, _, cut = spec.partition(":")
        data = Path(path).read_bytes()[: int(cut) if cut else None]
        best: dict[Path, list[float]] = {t: [float("inf"), float("inf")] for t in trees}
        sizes: dict[Path, int] = {}
        for _ in range(args.repeat):
            for tree in trees:
                archive, c = lmzip(tree, ["-c"], data)
                back, d = lmzip(tree, ["-d", "-c"], archive)
                if back != data:
                    raise SystemExit(f"{tree}: round trip of {spec} differs")
                sizes[tree] = len(archive)
                best[tree] = [min(best[tree][0], c), min(best[tree][1], d)]
        for tree in trees:
            c, d = best[tree]
            name = Path(path).name + (f" (first {len(data)} B)" if cut else "")
            row = {"tree": commit(tree), "input": name, "bytes": len(data), "archive": sizes[tree], "c": c, "d": d}
            rows.append(row)
            print(f"| {row['tree']} | {name} | {len(data)} | {sizes[tree]} | {c:.1f} | {d:.1f} | {d / c:.2f} | "
                  f"{len(data) / d / 1000:.2f} |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
