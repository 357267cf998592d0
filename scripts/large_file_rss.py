"""Peak memory of `lmzip -c` and `lmzip -d` on a large text file built from the corpus.

Issue 4 asks for peak RSS below 2 GB while compressing and decompressing a 20 MB text.
The file is the corpus's text files (alice29, asyoulik, lcet10, plrabn12, html) repeated
until it reaches --mb megabytes (10^6 bytes). Each command runs under `/usr/bin/time -v`,
which reports the process's maximum resident set size; the peak so far (VmHWM) and the
output written are logged every 30 s to DIR/<step>.samples.jsonl; the round trip is
compared byte for byte. Every step writes its result into --workdir, so a run that is
cut off can go on where it stopped (the file, the archive and finished measurements
are reused).

Decompression runs with --batch (default 64, twice lmzip's default): memory grows with
the number of chunks decoded in lock step, so a larger batch bounds the default from
above, and it finishes sooner.

Run: python scripts/large_file_rss.py [--mb 20] [--workdir DIR] [--batch 64]
Takes hours on a 2-core machine; run it with nothing else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SAMPLE_S = 30  # seconds between samples of the peak RSS so far
TEXTS = ["alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt", "html"]


def build_text(path: Path, size: int) -> None:
    """Concatenate the corpus texts, repeated, up to exactly `size` bytes."""
    pieces = [(CORPUS / name).read_bytes() for name in TEXTS]
    with open(path.with_suffix(".part"), "wb") as out:
        written = 0
        while written < size:
            for piece in pieces:
                piece = piece[: size - written]
                out.write(piece)
                written += len(piece)
    path.with_suffix(".part").rename(path)


def _vm_hwm_kb(time_pid: int) -> int | None:
    """VmHWM (peak RSS so far, kB) of lmzip, the child of the /usr/bin/time process."""
    try:
        child = Path(f"/proc/{time_pid}/task/{time_pid}/children").read_text().split()[0]
        status = Path(f"/proc/{child}/status").read_text()
    except (OSError, IndexError):
        return None  # not started yet, or already gone
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) if found else None


def timed(command: list[str], stdin: Path, stdout: Path, samples: Path) -> dict[str, float]:
    """Run command under /usr/bin/time -v; return wall seconds and peak RSS in MB (MiB).

    Every SAMPLE_S seconds it appends the peak so far and the output written so far to
    `samples` (JSON lines): when the peak is reached, and whether it stays flat."""
    partial = stdout.with_name(stdout.name + ".part")
    with open(stdin, "rb") as src, open(partial, "wb") as dst, open(samples, "w") as log:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", *command], stdin=src, stdout=dst, stderr=subprocess.PIPE, text=True
        )
        start = time.time()
        while True:
            try:
                stderr = proc.communicate(timeout=SAMPLE_S)[1]
                break
            except subprocess.TimeoutExpired:
                row = {"s": round(time.time() - start), "hwm_kb": _vm_hwm_kb(proc.pid), "out": partial.stat().st_size}
                log.write(json.dumps(row) + "\n")
                log.flush()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    partial.rename(stdout)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))  # type: ignore[union-attr]
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr).group(1)  # type: ignore[union-attr]
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(rss_kb / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0, help="size of the text in 10^6 bytes")
    ap.add_argument("--workdir", default="large_file_rss", help="where the file, archive and results go")
    ap.add_argument("--batch", type=int, default=64, help="lmzip -d --batch")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"corpus not found at {CORPUS}")
    lmzip = shutil.which("lmzip", path=str(Path(sys.executable).parent)) or "lmzip"
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    text, archive, restored = work / "text.txt", work / "text.txt.lmz", work / "text.out"
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    size = int(args.mb * 1e6)
    if not text.exists() or text.stat().st_size != size:
        build_text(text, size)
        results = {}
    results["input_bytes"] = size
    if "compress" not in results or not archive.exists():
        results["compress"] = timed([lmzip, "-c"], text, archive, work / "compress.samples.jsonl")
        results["archive_bytes"] = archive.stat().st_size
        results_path.write_text(json.dumps(results, indent=2))
    print("compress", results["compress"], flush=True)
    if "decompress" not in results:
        command = [lmzip, "-d", "-c", "--batch", str(args.batch)]
        results["decompress"] = timed(command, archive, restored, work / "decompress.samples.jsonl")
        results["decompress"]["batch"] = args.batch
        results["round_trip_exact"] = restored.read_bytes() == text.read_bytes()
        results_path.write_text(json.dumps(results, indent=2))
    print("decompress", results["decompress"], flush=True)
    for step in ("compress", "decompress"):
        results[step]["kb_per_s"] = round(size / 1000 / results[step]["seconds"], 2)
    results["bits_per_byte"] = round(results["archive_bytes"] * 8 / size, 4)
    results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not results["round_trip_exact"]:
        sys.exit("round trip differs")


if __name__ == "__main__":
    main()
