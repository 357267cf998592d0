"""What HDFS_2k.log's random fields cost under simple field-aware models, against its 0.6x target.

Each line is "date time thread level component: message" with 64-bit block ids, IPv4
addresses and ports inside the message. The block ids are random signed 64-bit numbers:
a new one carries 64 bits whatever the model (a floor, if they are uniform), a repeat at
least the choice among the ids seen so far. The other fields are charged by an adaptive
order-0 model per field (counts of the values seen, an escape to spelling a new value
digit by digit): a model lmzip could build, not a floor. The sum shows how much of the
0.6x target (0.6 x the xz -9e size in ../shared/corpus/README) these fields leave.
Run: python scripts/hdfs_fields.py [--file ../shared/corpus/logs/HDFS_2k.log] [--xz 42348]
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
DIGIT_BITS = math.log2(10)


def adaptive_bits(values: Iterable[str], new_value_bits: Callable[[str], float]) -> float:
    """Bits to code the values in order with counts of those seen (escape: (d + 1) / (n + d + 1))."""
    counts: Counter[str] = Counter()
    n, bits = 0, 0.0
    for v in values:
        d = len(counts)
        if v in counts:
            bits -= math.log2(counts[v] / (n + d + 1))
        else:
            bits -= math.log2((d + 1) / (n + d + 1))
            bits += new_value_bits(v)
        counts[v] += 1
        n += 1
    return bits


def block_id_bits(ids: list[str]) -> float:
    """64 bits per new id, a uniform choice among the distinct ids so far per repeat,
    and the new/repeat flag adaptively."""
    seen: set[str] = set()
    bits, new, repeats = 0.0, 1, 1
    for i in ids:
        total = new + repeats
        if i in seen:
            bits += -math.log2(repeats / total) + math.log2(len(seen))
            repeats += 1
        else:
            bits += -math.log2(new / total) + 64
            new += 1
            seen.add(i)
    return bits


def seconds(date: str, clock: str) -> int:
    return int(date) * 86400 + int(clock[:2]) * 3600 + int(clock[2:4]) * 60 + int(clock[4:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=CORPUS / "logs" / "HDFS_2k.log")
    ap.add_argument("--xz", type=int, default=42348, help="xz -9e size of the file (../shared/corpus/README)")
    args = ap.parse_args()
    text = args.file.read_bytes().decode("latin-1")
    lines = text.splitlines()
    fields = [line.split(maxsplit=3) for line in lines]
    times = [seconds(f[0], f[1]) for f in fields]
    deltas = [str(b - a) for a, b in zip([times[0], *times[:-1]], times, strict=True)]  # the first: 0
    spelled = lambda v: len(v) * DIGIT_BITS  # noqa: E731
    rows = [
        ("block ids", block_id_bits(re.findall(r"blk_(-?\d+)", text))),
        ("thread ids", adaptive_bits((f[2] for f in fields), spelled)),
        ("times (seconds since the line before)", adaptive_bits(deltas, lambda v: 2 * spelled(v))),
        ("IPv4 addresses", adaptive_bits(re.findall(r"\d+\.\d+\.\d+\.\d+", text), lambda v: 32)),
        ("ports", adaptive_bits(re.findall(r":(\d+)\b", text), spelled)),
        ("block sizes", adaptive_bits(re.findall(r"size (\d+)", text), spelled)),
    ]
    print(f"{args.file.name}: {len(lines)} lines, {len(text.encode())} bytes")
    print("| field | bytes |")
    print("| --- | ---: |")
    for name, bits in rows:
        print(f"| {name} | {bits / 8:,.0f} |")
    total = sum(bits for _, bits in rows) / 8
    target = 0.6 * args.xz
    print(f"| all of them | {total:,.0f} |")
    print(f"\n0.6 x xz -9e = {target:,.0f} B; these fields leave {target - total:,.0f} B for everything else")


if __name__ == "__main__":
    main()
