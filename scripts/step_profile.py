"""Where a decoding step's time goes: step.c's phases, per slot count and context length.

The kernels are built once more with -DLMZIP_PROFILE (kernels.library(profile=True): the
same integers, plus a clock at every phase boundary of step_rows); every slot holds
--context tokens of alice29.txt (a realistic attention length), then --steps lock-step
steps are timed. Prints milliseconds per step for each phase (the phases add up to the
step; the wall time also counts the Python around it). Last, the floor under any step:
the time to read the packed weights once (a sum over them as int64 on the same threads),
which every step pays however few its rows.
Run: python scripts/step_profile.py [--threads 2] [--slots 1,10,32] [--context 1000] [--steps 20]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from lmzip.engine import kernels
from lmzip.engine.engine import Engine

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", default="1,10,32")
    ap.add_argument("--context", default="1000", help="comma-separated context lengths (tokens)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lib = kernels.library(profile=True)
    if lib is None:
        raise SystemExit(f"no profiling build of the kernels: {kernels.build_error(profile=True)}")
    kernels.library = lambda portable=False, profile=False: lib  # every kernel call goes to this build
    amx = kernels.use_amx(True)
    engine = Engine.load(None)
    text = (CORPUS / "alice29.txt").read_bytes()
    ids = engine.tokenizer.encode_batch([text], byte_fallback=True)[0]
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, AMX {'on' if amx else 'off'}; "
          f"ms per step, mean of {args.steps} steps")  # fmt: skip
    print("| slots | context | wall | step | " + " | ".join(kernels.STEP_PHASES) + " |")
    print("| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in kernels.STEP_PHASES) + " |")
    for context in (int(c) for c in args.context.split(",")):
        for slots in (int(s) for s in args.slots.split(",")):
            decoder = engine.decoder(slots)
            starts = [s * 997 % (len(ids) - context - args.steps - 2) for s in range(slots)]
            for s, at in enumerate(starts):
                decoder.begin(s, ids[at : at + context])
            decoder.push({s: ids[at + context] for s, at in enumerate(starts)})  # warm up
            kernels.step_profile(lib)
            t0 = time.perf_counter()
            for k in range(1, args.steps + 1):
                decoder.push({s: ids[at + context + k] for s, at in enumerate(starts)})
            wall = (time.perf_counter() - t0) / args.steps * 1000
            steps, seconds = kernels.step_profile(lib)
            ms = {name: s / steps * 1000 for name, s in seconds.items()}
            cells = " | ".join(f"{v:.2f}" for v in ms.values())
            print(f"| {slots} | {context} | {wall:.2f} | {sum(ms.values()):.2f} | {cells} |", flush=True)
    step = engine.model.ops.step_kernel()
    if step is not None:
        ms, size = weights_read(step.keep)
        print(f"\nreading the packed weights once ({size / 1e6:.1f} MB): {ms:.2f} ms = {size / ms / 1e6:.1f} GB/s")


def weights_read(tensors: list[torch.Tensor], reps: int = 10) -> tuple[float, int]:
    """(milliseconds to read every tensor once, bytes): a sum over each as int64 words,
    best of ``reps`` (the memory traffic of a step's products without their arithmetic)."""
    words = [t.view(-1)[: t.numel() // 8 * 8].view(torch.int64) for t in tensors]
    size = sum(w.numel() * 8 for w in words)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for w in words:
            w.sum()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, size


if __name__ == "__main__":
    main()
