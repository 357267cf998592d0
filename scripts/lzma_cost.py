"""What format v5's lzma records cost and save against zstd -19 (docs/FORMAT.md "Why an
lzma record", docs/DESIGN.md "Memory").

    python scripts/lzma_cost.py [FILE ...]     # default: the corpus's binaries

Per file: zstd -19 and lzma (lmzip's raw LZMA2 stream, xz -9e's settings) payload bytes
and seconds for the whole file as one record, and the bytes an .xz container would add
around the same stream. Then the traced memory (tracemalloc: liblzma allocates through
Python) of coding 9 MiB, which uses the largest dictionary a record gets (8 MiB).
"""

from __future__ import annotations

import lzma
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from lmzip.codecs import MAX_LZMA_DICT, lzma_compress, zstd_compress  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_FILES = [CORPUS / "kppkn.gtb", CORPUS / "geo.protodata", CORPUS / "paper-100k.pdf"]


def timed(fn, data: bytes) -> tuple[bytes, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    out = fn(data)
    return out, time.perf_counter() - t0


def main(argv: list[str]) -> None:
    files = [Path(a) for a in argv] or DEFAULT_FILES
    print("| file | bytes | zstd -19 | s | lzma | s | lzma MB/s | .xz container adds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for path in files:
        data = path.read_bytes()
        z, tz = timed(zstd_compress, data)
        x, tx = timed(lzma_compress, data)
        container = len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) - len(x)
        print(
            f"| {path.name} | {len(data)} | {len(z)} | {tz:.2f} | {len(x)} | {tx:.2f} | "
            f"{len(data) / tx / 1e6:.1f} | {container} |"
        )
    big = b"".join(p.read_bytes() for p in files) * 100
    big = big[: MAX_LZMA_DICT + (1 << 20)]  # 9 MiB: the 8 MiB dictionary
    tracemalloc.start()
    _, t = timed(lzma_compress, big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\nlzma of {len(big) >> 20} MiB: {t:.1f} s, traced peak {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
