"""The least time lock-step decompression can take here, from the bytes it must read.

    python scripts/decode_floor.py [--file F[:BYTES] ...] [--batch 32] [--json OUT]

An exact decoder learns a token only by running the model on the token before it. Each
engine call reads the model's packed weights once (every slot's rows share that read),
and each decoded token's attention reads the int8 keys and values, with their float
scales, of every position it sees (the sink and the last window - 1). Guessed tokens
verified in the same call share both reads with the slot's first row; prose gives the
file's guessers about 1.0-1.1 tokens per call (docs/DESIGN.md, "Speculative
verification"), so the floor below counts one token per slot and call.

For each input this compresses it once with the defaults (timed, start-up included, as
`lmzip -c` runs), replays the decoder's schedule on the archive's token counts (a memory
group's chunks in lock step from their first token to the group's longest; without
memory, `batch` slots refilled within pipeline.DECODE_LOOKAHEAD x batch records),
and divides the bytes by the read bandwidth of the packed weights: the faster of a sum
over them (as scripts/step_profile.py) and step.c's one-row products over them, best of
ten each. The floor leaves out every operation that is
not a read: attention's and the products' arithmetic, the range coder, the memory's
models, Python. Prints a Markdown table; --json writes the rows.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import torch
from decode_speed import DEFAULT_FILES, lmzip  # scripts/decode_speed.py
from lockstep_occupancy import memory_group_calls, memory_groups  # scripts/lockstep_occupancy.py
from lockstep_occupancy import steps as refilled_steps
from step_profile import weights_read  # scripts/step_profile.py

from lmzip.engine.engine import Engine
from lmzip.engine.kernels import linear_product
from lmzip.pipeline import DECODE_LOOKAHEAD, read_archive_info

ROOT = Path(__file__).resolve().parents[1]
SCALE_BYTES = 4  # one float32 scale per cached key row and per value row


def read_input(spec: str) -> tuple[str, bytes]:
    """(label, bytes) of FILE or FILE:BYTES (its first BYTES bytes)."""
    path, _, count = spec.partition(":")
    data = Path(path).read_bytes()
    if count:
        data = data[: int(count)]
    return (f"{Path(path).name} (first {len(data)} B)" if count else Path(path).name), data


def visible_positions(tokens: int, window: int) -> int:
    """Cached positions read over a chunk of `tokens` tokens: the token at position p sees
    min(p + 1, window) of them (all up to p, or the sink and the last window - 1)."""
    full = max(0, tokens - window)
    ramp = min(tokens, window)
    return ramp * (ramp + 1) // 2 + full * window


def archive_calls(info, batch: int) -> tuple[int, list[int]]:  # info: container.ArchiveInfo
    """(engine calls at one token per slot and call, token count per chunk) for an
    archive's model-coded chunks, grouped as the decoder takes them: a memory group's lm
    records together, else DECODE_LOOKAHEAD x batch lm and spans records with freed slots
    refilled (scripts/lockstep_occupancy.py)."""
    if groups := memory_groups(info):
        calls = sum(memory_group_calls(g, batch, info.model.memory_block) for g in groups)
        return calls, [t for g in groups for t in g]
    counts = [r.token_count for r in info.records if r.kind in ("lm", "spans") and r.token_count]
    size = DECODE_LOOKAHEAD * batch
    return sum(refilled_steps(counts[i : i + size], batch) for i in range(0, len(counts), size)), counts


def one_row_products_ms(step, reps: int = 10) -> float:  # noqa: ANN001  (a kernels.StepKernel)
    """Milliseconds of step.c's products of one row over every packed layer, best of
    ``reps``: the same bytes read by the kernel itself, where that is faster than a sum."""
    best = float("inf")
    rows = {s.k: torch.zeros(1, s.k, dtype=torch.int8) for s in step.linears.values()}
    for _ in range(reps):
        t0 = time.perf_counter()
        for struct in step.linears.values():
            linear_product(struct, rows[struct.k])
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", action="append", help="FILE or FILE:BYTES (default: alice29.txt and its first 16 KiB)")
    ap.add_argument("--batch", type=int, default=32, help="decoding slots (lmzip -d's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine.load(None)
    step = engine.model.ops.step_kernel()
    if step is None:
        raise SystemExit("no decoding step kernel on this machine")
    ms, weight_bytes = weights_read(step.keep)
    ms = min(ms, one_row_products_ms(step))
    bandwidth = weight_bytes / (ms / 1000)
    cfg = engine.model.config
    per_position = cfg.num_layers * cfg.num_kv_heads * 2 * (cfg.dim_per_head + SCALE_BYTES)
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, {args.batch} slots; "
          f"weights {weight_bytes / 1e6:.1f} MB read in {ms:.2f} ms = {bandwidth / 1e9:.1f} GB/s; "
          f"cache {per_position} B per position")  # fmt: skip
    print("| input | bytes | tokens | engine calls | weights GB | cache GB | floor s | -c s | floor / -c |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for spec in args.file or DEFAULT_FILES:
        label, data = read_input(spec)
        archive, seconds = lmzip(ROOT, ["-c"], data)
        info = read_archive_info(io.BytesIO(archive))
        calls, tokens = archive_calls(info, args.batch)
        window = info.model.context_window if info.model is not None else 0
        cache = sum(visible_positions(t, window) for t in tokens) * per_position
        weights = calls * weight_bytes
        floor = (weights + cache) / bandwidth
        row = {
            "input": label,
            "bytes": len(data),
            "tokens": sum(tokens),
            "engine_calls": calls,
            "weights_gb": round(weights / 1e9, 1),
            "cache_gb": round(cache / 1e9, 1),
            "floor_s": round(floor, 1),
            "compress_s": round(seconds, 1),
            "bandwidth_gb_s": round(bandwidth / 1e9, 1),
        }
        rows.append(row)
        print(f"| {label} | {len(data)} | {row['tokens']} | {calls} | {row['weights_gb']} | {row['cache_gb']} "
              f"| {row['floor_s']} | {row['compress_s']} | {floor / seconds:.2f} |", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
