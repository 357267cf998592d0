"""Engine and end-to-end throughput on this machine, with transformers' float model as baseline.

Measures, in one run:
  * prefill (compression path): integer engine tokens/s vs transformers float forward
    on the same windows (teacher forced);
  * batched step (decompression path): tokens/s with --slots sequences in lock step,
    each with a full window of context;
  * lmzip compress / decompress of the file through the CLI (KB/s, bits per byte),
    each in its own process with its peak RSS.
Run: python scripts/benchmark.py [--file F] [--bytes N] [--window 1024] [--slots 64] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


# The child's own peak RSS: VmHWM of its address space. (getrusage's ru_maxrss is not:
# on Linux a child starts from its parent's high-water mark at fork, so a benchmark that
# holds 1.8 GB would report at least that for every lmzip process it starts.)
PEAK_RSS_KB = (
    "def _peak_kb():\n"
    "    try:\n"
    "        for line in open('/proc/self/status'):\n"
    "            if line.startswith('VmHWM:'):\n"
    "                return int(line.split()[1])\n"
    "    except OSError:\n"
    "        pass\n"
    "    import resource\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
)


def run_cli(args: list[str], stdin: Path, stdout: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one lmzip process."""
    code = (
        PEAK_RSS_KB + "import sys; sys.argv = ['lmzip'] + sys.argv[1:]\n"
        "from lmzip.cli import main\n"
        "try:\n    main()\nfinally:\n"
        "    sys.stderr.write('RSS %d\\n' % _peak_kb())"
    )
    t = time.time()
    with stdin.open("rb") as src, stdout.open("wb") as dst:
        proc = subprocess.run([sys.executable, "-c", code, *args], stdin=src, stdout=dst, stderr=subprocess.PIPE)
    seconds = time.time() - t
    err = proc.stderr.decode()
    if proc.returncode != 0:
        raise SystemExit(f"lmzip {' '.join(args)} failed: {err}")
    rss = int(err.strip().splitlines()[-1].split()[1]) / 1024
    return seconds, rss


@contextlib.contextmanager
def stage_times() -> Iterator[dict[str, float]]:
    """Share of wall time per engine stage while the block runs (timers wrap the stages)."""
    from lmzip.engine import model, native_ops

    spent: Counter[str] = Counter()
    llama = model.ExactLlama
    ops = [
        "rms_quantized",  # RMSNorm and quantization for the next layer
        "quantized",
        "queries_keys_values",  # qkv product, RoPE, quantization (incl. its linear)
        "mlp_inner",  # gate_up product, SiLU, quantization (incl. its GEMM)
        "attention",  # the C kernels, with int8 GEMMs when scoring
    ]
    patched = [
        (model, "linear"),  # every projection and the output head (int8 GEMM and its scaling)
        *((cls, name) for cls in (model.ReferenceOps, native_ops.NativeOps) for name in ops),  # whichever runs
        (llama, "bounds"),  # the exact softmax over the vocabulary, coder intervals
        (llama, "find"),
        (llama, "step_logits"),  # decoding: one C call for the whole step (step.c)
    ]
    originals = [getattr(owner, name) for owner, name in patched]

    def timed(name: str, fn):  # noqa: ANN001
        def run(*a, **kw):  # noqa: ANN002, ANN003
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0

        return run

    for (owner, name), fn in zip(patched, originals, strict=True):
        setattr(owner, name, timed(name, fn))
    shares: dict[str, float] = {}
    t = time.perf_counter()
    try:
        yield shares
    finally:
        total = time.perf_counter() - t
        for (owner, name), fn in zip(patched, originals, strict=True):
            setattr(owner, name, fn)
        shares.update({k: round(v / total, 3) for k, v in spent.most_common()})
        shares["rest"] = round(1 - sum(spent.values()) / total, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(CORPUS / "alice29.txt"))
    ap.add_argument("--bytes", type=int, default=0, help="use only the first N bytes")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--no-float", action="store_true")
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--profile", action="store_true", help="report the share of time per engine stage")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()
    if args.bytes:
        data = data[: args.bytes]
    report: dict[str, object] = {"file": args.file, "bytes": len(data), "threads": torch.get_num_threads()}

    from lmzip.engine.engine import Engine

    t = time.time()
    engine = Engine.load(window=args.window)  # a warm model cache: no conversion
    report["engine_load_s"] = round(time.time() - t, 2)
    ids = engine.tokenizer.encode(data) or []
    windows = [ids[i : i + args.window - 1] for i in range(0, len(ids), args.window - 1)]
    engine.score([ids[:64]])  # warm-up
    t = time.time()
    engine.score(windows)
    prefill = len(ids) / (time.time() - t)
    report["prefill_tokens_per_s"] = round(prefill)
    if args.profile:
        with stage_times() as shares:
            engine.score(windows[:2])
        report["prefill_profile"] = shares

    # each slot resumes a different place of the file with a full window of context
    decoder = engine.decoder(args.slots)
    context = args.window - 1
    stride = max(1, (len(ids) - context - 2 * args.steps - 1) // args.slots)  # room for every step below
    for s in range(args.slots):
        decoder.begin(s, ids[s * stride : s * stride + context])

    gen = torch.Generator().manual_seed(0)

    def steps(dec, first: int, count: int) -> None:  # noqa: ANN001
        for p in range(first, first + count):  # as lm_codec's decoder: find, then push
            dec.find(torch.randint(0, 1 << 24, (args.slots,), generator=gen))
            dec.push({s: ids[s * stride + context + p] for s in range(args.slots)})

    # The first step also packs the weights for step.c, once per loaded model (as the
    # scoring warm-up above): reported on its own, the throughput is the steps after it.
    t = time.time()
    steps(decoder, 0, 1)
    report["step_first_s"] = round(time.time() - t, 3)
    t = time.time()
    steps(decoder, 1, args.steps)
    step = args.slots * args.steps / (time.time() - t)
    if args.profile:
        with stage_times() as shares:
            steps(decoder, 1 + args.steps, args.steps)
        report["step_profile"] = shares
    report["step_tokens_per_s"] = round(step)
    report["step_slots"] = args.slots
    report["step_context"] = context
    del decoder

    if not args.no_float:
        from transformers import AutoModelForCausalLM

        from lmzip.engine.loader import default_model_path

        path = default_model_path()
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        with torch.inference_mode():
            t = time.time()
            for w in windows:
                model(torch.tensor([[engine.bos] + w]))
            fl = len(ids) / (time.time() - t)
        report["float_forward_tokens_per_s"] = round(fl)
        report["prefill_vs_float"] = round(prefill / fl, 2)
        del model

    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            src, arc, out = Path(tmp, "in"), Path(tmp, "in.lmz"), Path(tmp, "out")
            src.write_bytes(data)
            c_s, c_rss = run_cli(["-c", "-q"], src, arc)
            d_s, d_rss = run_cli(["-d", "-c", "-q"], arc, out)
            assert out.read_bytes() == data, "round trip failed"
            size = arc.stat().st_size
        report.update(
            archive_bytes=size,
            bpb=round(8 * size / len(data), 4),
            compress_kb_per_s=round(len(data) / 1000 / c_s, 2),
            decompress_kb_per_s=round(len(data) / 1000 / d_s, 2),
            compress_peak_rss_mb=round(c_rss),
            decompress_peak_rss_mb=round(d_rss),
        )
    report["machine"] = f"{os.cpu_count()} cores, torch {torch.__version__}"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
