"""Evaluate variants of the file-wide memory in seconds, on a file's cached model predictions.

    python scripts/memory_variants.py capture FILE [--threads 1]    # `lmzip -c FILE` once
    python scripts/memory_variants.py replay FILE [--variant NAME]... [--breakdown]

`capture` compresses FILE as `lmzip -c` does and keeps what lmzip/memory.py was given:
every memory group's chunks as (tokens, the model's CF and f per token), in coding
order, plus the bytes of each token used (cache: ~/.cache/lmzip/memory_variants/). The
model's work is the slow part (minutes); `replay` then runs memory.py's encode_group
over the cache with a fresh memory, as the archive's memory sees it, once per variant
(module constants patched, then restored), and prints the mixed ideal code length (the
sum of -log2 of each coded token's mixed frequency, what the lm records cost less the
coder's few bytes) beside the model's alone. `--breakdown` splits both by kind of
token (HDFS block-id digits, IPv4 addresses with port, other digits, the rest).
Python's memory.py codes about 10,000-20,000 tokens a second; each replay prints its time.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from lmzip import memory as mem  # noqa: E402

Group = list[tuple[list[int], list[int], list[int]]]  # per chunk: tokens, CF, f

# name -> memory.py constants to change
VARIANTS: dict[str, dict[str, object]] = {
    "as-built": {},
    "numerics5": {"numerics": 5},  # what lmzip wrote before numerics v6
    "numerics6": {"numerics": 6},  # what lmzip wrote before numerics v7
    "ngram1-4": {"NGRAM_ORDERS": {5: (1, 2, 3, 4), 7: (1, 2, 3, 4)}},  # v7 with v5's orders
    "ngram+6,8": {"NGRAM_ORDERS": {5: (1, 2, 3, 4), 7: (1, 2, 3, 4, 6, 8)}},
    "young-off": {"YOUNG_BOOST": 1},  # v7 without the faster start of young weight sets
    "match6,3": {"MATCH_ORDERS": (6, 3)},
    "mixrate0.45": {"MIX_RATE": 115},
    "countmax255": {"NGRAM_COUNT_MAX": 255},
    "shape3-24": {"SHAPE_ORDERS": (3, 6, 12, 24)},  # v7's skeleton without its longest context
    "shape-run8": {"RUN_CAP": 8},  # v7 with digit runs longer than 8 sharing a context
}


def cache_path(file: Path) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lmzip" / "memory_variants" / f"{file.name}.pkl"


def capture(file: Path, threads: int | None) -> Path:
    """Compress ``file`` with the defaults, caching every memory group memory.py codes."""
    from lmzip.api import Compressor
    from lmzip.lm_codec import LMCodec

    groups: list[Group] = []
    tokenizers = []
    original, finish = mem.encode_group, LMCodec.finish_group

    def spy(memory: mem.FileMemory, seqs: Group) -> list[tuple[list[int], list[int]]]:
        groups.append([(list(map(int, t)), list(map(int, c)), list(map(int, f))) for t, c, f in seqs])
        return original(memory, seqs)

    def finish_spy(self: LMCodec, indices: list[int]) -> list[tuple[bytes, int]]:
        tokenizers.append(self.engine.tokenizer)
        return finish(self, indices)

    mem.encode_group = spy  # type: ignore[assignment]
    LMCodec.finish_group = finish_spy  # type: ignore[method-assign]
    try:
        archive = Compressor(threads=threads).compress(file.read_bytes())
    finally:
        mem.encode_group, LMCodec.finish_group = original, finish  # type: ignore[assignment,method-assign]
    if not groups:
        raise SystemExit(f"memory_variants: {file.name}: no lm chunk coded with the memory")
    tokenizer = tokenizers[0]
    used = {t for g in groups for toks, _, _ in g for t in toks}
    out = cache_path(file)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        pickle.dump({"vocab": tokenizer.vocab_size, "groups": groups,
                     "pieces": {t: tokenizer.id_to_bytes[t] for t in used}}, f)  # fmt: skip
    print(f"{file.name}: archive {len(archive):,} B; {sum(len(g) for g in groups)} lm chunks cached in {out}")
    return out


@contextmanager
def patched(changes: dict[str, object]) -> Iterator[None]:
    changes = {k: v for k, v in changes.items() if k != "numerics"}  # replay's argument, not a constant
    saved = {k: getattr(mem, k) for k in changes}
    for k, v in changes.items():
        setattr(mem, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(mem, k, v)


KINDS = {"b": "HDFS block-id digits", "i": "IPv4 address[:port]", "d": "other digits", "o": "the rest"}


def kinds_of(text: bytes) -> bytearray:
    """One letter of KINDS per byte of ``text``."""
    label = bytearray(ord("d") if 48 <= c <= 57 else ord("o") for c in text)
    for m in re.finditer(rb"\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?", text):
        label[m.start() : m.end()] = b"i" * (m.end() - m.start())
    for m in re.finditer(rb"blk_-?([0-9]+)", text):
        label[m.start(1) : m.end(1)] = b"b" * (m.end(1) - m.start(1))
    return label


def replay(
    cache: dict,
    on_token: Callable[[bytes, str, int, int], None] | None = None,
    numerics: int = mem.MEMORY_NUMERICS[-1],
    independent: bool = False,
) -> tuple[float, float]:
    """(mixed, model) ideal bytes of the cached groups through memory.py as patched now,
    with the memory of numerics version ``numerics``; ``independent``: every memory group
    starts from an empty memory (what decoding groups apart, on other cores or machines,
    would cost: the format chains them, group g seeing all of the groups before it)."""
    digits = frozenset(t for t, piece in cache["pieces"].items() if piece and piece.isdigit())  # of the used tokens
    memory = mem.FileMemory(cache["vocab"], _block(), numerics, digits)
    mixed = model = 0.0
    for g, group in enumerate(cache["groups"]):
        if independent and g:
            memory = mem.FileMemory(cache["vocab"], _block(), numerics, digits)
        for (toks, _, fs), (_, freqs) in zip(group, mem.encode_group(memory, group), strict=True):
            mixed += sum(mem.FREQ_BITS - math.log2(f) for f in freqs)
            model += sum(mem.FREQ_BITS - math.log2(f) for f in fs)
            if on_token is not None:
                pieces = [cache["pieces"][t] for t in toks]
                label, pos = kinds_of(b"".join(pieces)), 0
                for piece, f, fm in zip(pieces, fs, freqs, strict=True):
                    on_token(piece, chr(label[pos]) if piece else "o", f, fm)
                    pos += len(piece)
    return mixed / 8, model / 8


def _block() -> int:
    from lmzip.lm_codec import DEFAULT_MEMORY_BLOCK

    return DEFAULT_MEMORY_BLOCK


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["capture", "replay"])
    ap.add_argument("file", type=Path)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: all")
    ap.add_argument("--breakdown", action="store_true", help="split the as-built replay by kind of token")
    ap.add_argument(
        "--independent-groups", action="store_true", help="every memory group from an empty memory (not the format)"
    )
    args = ap.parse_args()
    if args.action == "capture":
        capture(args.file, args.threads)
        return 0
    path = cache_path(args.file)
    if not path.is_file():
        print(f"memory_variants: no cache for {args.file.name}: run capture first", file=sys.stderr)
        return 1
    with path.open("rb") as f:
        cache = pickle.load(f)
    tokens = sum(len(t) for g in cache["groups"] for t, _, _ in g)
    print(f"{args.file.name}: {len(cache['groups'])} memory groups, {tokens:,} tokens")
    base = None
    for name in args.variant or list(VARIANTS):
        with patched(VARIANTS[name]):
            sums: dict[str, list[float]] = {}

            def count(piece: bytes, kind: str, f: int, fm: int, sums: dict[str, list[float]] = sums) -> None:
                e = sums.setdefault(kind, [0, 0, 0.0, 0.0])
                e[0] += 1
                e[1] += len(piece)
                e[2] += mem.FREQ_BITS - math.log2(f)
                e[3] += mem.FREQ_BITS - math.log2(fm)

            numerics = int(VARIANTS[name].get("numerics", mem.MEMORY_NUMERICS[-1]))  # type: ignore[call-overload]
            t0 = time.perf_counter()
            on_token = count if args.breakdown and name == "as-built" else None
            mixed, model = replay(cache, on_token, numerics, args.independent_groups)
            seconds = time.perf_counter() - t0
        base = mixed if base is None else base
        print(f"  {name:10} mixed {mixed:10,.0f} B ({mixed / base - 1:+.2%})   model alone {model:10,.0f} B"
              f"   {seconds:.1f} s")  # fmt: skip
        for kind, (n, nbytes, lm_bits, mixed_bits) in sorted(sums.items()):
            print(f"    {KINDS[kind]:22} {n:8,} tokens {nbytes:8,} bytes: model {lm_bits / 8:9,.0f} B, "
                  f"mixed {mixed_bits / 8:9,.0f} B")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
