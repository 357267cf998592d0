"""`make demo`: round-trip one file through lmzip and compare with gzip -9 and zstd -19.

Runs the real CLI in a subprocess (as a user would), in a temp directory, and
checks the decompressed bytes against the original before printing any figure.

    python scripts/demo.py [FILE] [extra lmzip options, e.g. --no-lm or --model NAME]
"""

from __future__ import annotations

import filecmp
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lmzip(*args: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "lmzip.cli", *args], cwd=cwd)
    if p.returncode != 0:
        sys.exit(f"demo: `lmzip {' '.join(args)}` failed with exit status {p.returncode}")
    return time.perf_counter() - t0


def gzip9(path: Path) -> int:
    if shutil.which("gzip"):
        out = subprocess.run(["gzip", "-9nc", str(path)], capture_output=True, check=True).stdout
    else:
        out = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
    return len(out)


def zstd19(path: Path) -> int:
    if shutil.which("zstd"):
        cmd = ["zstd", "-19", "-q", "-c", str(path)]
        return len(subprocess.run(cmd, capture_output=True, check=True).stdout)
    import zstandard

    return len(zstandard.ZstdCompressor(level=19).compress(path.read_bytes()))


def main(argv: list[str]) -> None:
    src = Path(argv[0] if argv else "README.md")
    extra = argv[1:]
    if not src.is_file():
        sys.exit(f"demo: {src}: not a regular file")
    size = src.stat().st_size
    with tempfile.TemporaryDirectory(prefix="lmzip-demo-") as tmp:
        work = Path(tmp)
        copy = work / src.name
        shutil.copyfile(src, copy)
        print(f"compressing {src} ({size} bytes) with lmzip {' '.join(extra)}".rstrip())
        t_c = lmzip("-k", *extra, copy.name, cwd=work)
        archive = work / (copy.name + ".lmz")
        copy.rename(work / "original")
        print("decompressing and verifying")
        t_d = lmzip("-d", "-k", archive.name, cwd=work)
        if not filecmp.cmp(work / "original", copy, shallow=False):
            sys.exit("demo: FAILED: decompressed file differs from the original")
        print("round trip OK: decompressed file is identical (cmp)\n")
        rows = [
            ("lmzip", archive.stat().st_size, f"{t_c:.1f}s / {t_d:.1f}s"),
            ("gzip -9", gzip9(copy), ""),
            ("zstd -19", zstd19(copy), ""),
        ]
    print(f"{'':10} {'bytes':>10} {'bits/byte':>10} {'ratio':>7}  time (comp / decomp)")
    print(f"{'original':10} {size:>10}")
    for name, n, note in rows:
        bpb = 8 * n / size if size else 0.0
        ratio = size / n if n else 0.0
        print(f"{name:10} {n:>10} {bpb:>10.3f} {ratio:>6.2f}x  {note}")


if __name__ == "__main__":
    main(sys.argv[1:])
