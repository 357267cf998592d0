"""Time `lmzip -c` and `lmzip -d` with and without the file-wide memory, in one run.

    python scripts/memory_speed.py [FILE] [--bytes N] [--threads 1] [--repeat 1]

FILE defaults to ../shared/corpus/alice29.txt. Compresses it with `--memory-block 0`
(numerics v4, the model alone) and with the default memory (numerics v5), decompresses
both archives, checks the round trips and prints seconds per step and the ratio of the
two. Both versions run alternately in this one process tree, so a busy machine slows
both alike; take the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "corpus" / "alice29.txt"


def timed(cmd: list[str], data: bytes) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {p.stderr.decode().strip()}")
    return p.stdout, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--bytes", type=int, help="only the first N bytes")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    data = args.file.read_bytes()[: args.bytes]
    base = [sys.executable, "-m", "lmzip.cli"] + (["--threads", str(args.threads)] if args.threads else [])
    best: dict[str, float] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory():
        for _ in range(args.repeat):
            for label, extra in (("model alone", ["--memory-block", "0"]), ("with memory", [])):
                archive, tc = timed([*base, "-c", *extra], data)
                back, td = timed([*base, "-dc"], archive)
                if back != data:
                    raise SystemExit(f"{label}: round trip failed")
                sizes[label] = len(archive)
                for step, t in (("-c", tc), ("-d", td)):
                    key = f"{label} {step}"
                    best[key] = min(best.get(key, t), t)
    print(f"{args.file.name}: {len(data):,} bytes")
    for label in ("model alone", "with memory"):
        c, d = best[f"{label} -c"], best[f"{label} -d"]
        print(f"{label}: {sizes[label]:,} B; lmzip -c {c:.1f} s, lmzip -d {d:.1f} s")
    for step in ("-c", "-d"):
        print(f"lmzip {step}: memory / model alone = {best[f'with memory {step}'] / best[f'model alone {step}']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
