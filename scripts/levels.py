"""Size and speed of every compression level (-1 .. -9) on one sample, through the Python API.

For each level: the archive of the sample (its size is exact and machine-independent),
the compression time (model already loaded; the load is reported on its own) and the
decompression time (a Decompressor that has already decoded one archive with the same
window, so again without the load), and a check that the round trip is exact.
Writes a Markdown table (docs/levels.md by default) and prints it.

Run: python scripts/levels.py [--file F] [--bytes 32768] [--threads N] [--levels 1,2,...] [--out docs/levels.md]
Slow: the model levels take about (bytes / 5 KB/s) to compress and twice that to decompress, each.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import time
from pathlib import Path

from checkout import commit  # scripts/checkout.py

import lmzip
from lmzip import defaults
from lmzip.pipeline import load_codec

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def measure(data: bytes, level: int, threads: int | None) -> dict[str, object]:
    lv = defaults.LEVELS[level]
    # One LM codec for both directions, loaded (and timed) on its own.
    options = lmzip.Compressor(level, threads=threads).options
    t0 = time.perf_counter()
    codec = load_codec(dataclasses.replace(options, codec_factory=None)) if lv.use_lm else None
    load_s = time.perf_counter() - t0
    factory = (lambda _options: codec) if codec is not None else None
    t0 = time.perf_counter()
    archive = lmzip.Compressor(level, threads=threads, codec_factory=factory).compress(data)
    comp_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = lmzip.Decompressor(threads=threads, codec_factory=factory).decompress(archive)
    dec_s = time.perf_counter() - t0
    return {
        "level": level,
        "model": lv.use_lm,
        "chunk_size": lv.chunk_size,
        "window": lv.window,
        "bytes": len(archive),
        "bits_per_byte": 8 * len(archive) / len(data),
        "compress_s": comp_s,
        "decompress_s": dec_s,
        "load_s": load_s,
        "exact": back == data,
    }


def table(rows: list[dict[str, object]], n: int) -> str:
    out = [
        "| level | model | chunk | window | archive bytes | bits/byte | compress s | compress KB/s | decompress s |",
        "| ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mark = "**" if r["level"] == defaults.LEVEL else ""
        kbs = n / 1024 / float(r["compress_s"])  # type: ignore[arg-type]
        out.append(
            f"| {mark}-{r['level']}{mark} | {'yes' if r['model'] else 'no'} | {int(r['chunk_size']) // 1024}K "  # type: ignore[call-overload]
            f"| {r['window'] if r['model'] else '-'} | {r['bytes']} | {float(r['bits_per_byte']):.3f} "  # type: ignore[arg-type]
            f"| {float(r['compress_s']):.2f} | {kbs:.2f} | {float(r['decompress_s']):.2f} |"  # type: ignore[arg-type]
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(CORPUS / "alice29.txt"))
    ap.add_argument("--bytes", type=int, default=32768, help="use the file's first BYTES bytes")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--levels", default="1,2,3,4,5,6,7,8,9")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "levels.md"))
    args = ap.parse_args()
    data = Path(args.file).read_bytes()[: args.bytes]
    rows = []
    for level in (int(x) for x in args.levels.split(",")):
        rows.append(measure(data, level, args.threads))
        r = rows[-1]
        print(f"-{level}: {r['bytes']} bytes, {r['compress_s']:.1f} s / {r['decompress_s']:.1f} s", flush=True)
        assert r["exact"], f"level {level}: round trip differs"
    load = os.getloadavg()[0]
    model_loads = [float(r["load_s"]) for r in rows if r["model"]]  # type: ignore[arg-type]
    loads = f"{min(model_loads):.1f}-{max(model_loads):.1f}" if model_loads else "-"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    cmd = f"python scripts/levels.py --file {Path(args.file).name} --bytes {args.bytes}"
    if args.threads:
        cmd += f" --threads {args.threads}"
    text = f"""# Compression levels

What `-1` .. `-9` (`--fast` = `-1`, `--best` = `-9`) set, and what they cost, on the first
{len(data)} bytes of {Path(args.file).name}. The default is **-{defaults.LEVEL}**. `--chunk-size`, `--window`
and `--no-lm` override a level's values; the archive records what decompression needs,
so `-d` takes no level. Levels are defined in lmzip/defaults.py.

- `-1` uses no model: every chunk is stored or zstd-compressed (zstd -19), so it runs at
  zstd's speed and ratio.
- `-2` .. `-9` use the model with longer chunks and context windows as the level rises:
  smaller chunks decode faster (more chunks advance side by side in the lock-step
  decoder) and compress a little worse; a longer window gives each token more context and
  costs more per token.

Archive sizes are exact on any machine. Times are wall-clock seconds with the model
already loaded (loading took {loads} s per window),
measured at lmzip {commit()} on {when}, {platform.machine()}, {os.cpu_count()} CPUs,
threads {args.threads or "default"}, 1-minute load average {load:.1f} at the end. On a machine shared
with other jobs the times move with their load: only the sizes are firm there.

`{cmd}`

{table(rows, len(data))}
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
