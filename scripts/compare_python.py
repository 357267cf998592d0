"""Compare gzip, bz2, lzma, zstandard and lmzip from Python, each through its own module's API.

The lmzip lines use the same calls as the others (`lmzip.compress(data, level)`,
`lmzip.decompress(blob)`), with a `lmzip.Compressor` / `lmzip.Decompressor` kept
across files so the model loads once (the first file's lmzip times include that load).
Every round trip is checked.

Run: python scripts/compare_python.py [FILE...] [--bytes 32768] [--levels 1,6] [--threads N]
(default FILE: ../shared/corpus/alice29.txt). The model levels take about (bytes / 5 KB/s)
to compress and longer to decompress.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

import lmzip

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


Pair = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]  # (compress, decompress)


def codecs(levels: list[int], threads: int | None) -> dict[str, Pair]:
    zc, zd = zstandard.ZstdCompressor(level=19), zstandard.ZstdDecompressor()
    table: dict[str, Pair] = {
        "gzip -9": (lambda d: gzip.compress(d, 9, mtime=0), gzip.decompress),
        "bz2 -9": (lambda d: bz2.compress(d, 9), bz2.decompress),
        "lzma -9e": (lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
        "zstd -19": (zc.compress, zd.decompress),
    }
    dec = lmzip.Decompressor(threads=threads)  # one for every level: it keeps the last archive's model
    for level in levels:
        comp = lmzip.Compressor(level, threads=threads)
        table[f"lmzip -{level}"] = (comp.compress, dec.decompress)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(CORPUS / "alice29.txt")])
    ap.add_argument("--bytes", type=int, default=32768, help="use each file's first BYTES bytes (0: all)")
    ap.add_argument("--levels", default="1,6", help="lmzip levels to run")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    table = codecs([int(x) for x in args.levels.split(",")], args.threads)
    print(f"{'file':<16} {'codec':<10} {'bytes':>9} {'bits/byte':>9} {'compress s':>10} {'decompress s':>12}")
    for name in args.files:
        data = Path(name).read_bytes()
        data = data[: args.bytes] if args.bytes else data
        for codec, (compress, decompress) in table.items():
            t0 = time.perf_counter()
            blob = compress(data)
            t1 = time.perf_counter()
            back = decompress(blob)
            t2 = time.perf_counter()
            if back != data:
                raise SystemExit(f"{codec}: round trip differs on {name}")
            bpb = 8 * len(blob) / max(1, len(data))
            print(f"{Path(name).name:<16} {codec:<10} {len(blob):>9} {bpb:>9.3f} {t1 - t0:>10.2f} {t2 - t1:>12.2f}")


if __name__ == "__main__":
    main()
