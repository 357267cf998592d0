"""lmzip on tar streams and on text with stray bytes (format v3 spans records).

    python scripts/tar_report.py                 # writes docs/tar_report.md and docs/readme_parts/spans12.md
    python scripts/tar_report.py --quick         # two small sets, for trying the script (seconds of model time)

For each set of files it builds a deterministic tar (`tar --sort=name --mtime=@0
--owner=0 --group=0 --numeric-owner -cf`) and the same files concatenated in the same
order, and compresses both with lmzip (default model, 16 KiB chunks, one thread), gzip -9,
xz -9e and zstd -19. Sets: the project's own lmzip/ sources (the files git tracks under
lmzip/), and the text files of ../shared/corpus but urls.10K (a URL list on which the
model itself loses to xz: see docs/corpus.md; `--with-urls` adds it, about 5 more
minutes of model time per archive). Targets (issue: every input's text reaches the
model): the tar at most 60% of xz -9e, and within 15% of lmzip on the concatenation.

Then the stray-bytes check: the first 31 KiB of alice29.txt (so that both texts take
two 16 KiB chunks), and the same text with one
byte from the 21 values without a single-byte token inserted at a random place in every
KiB; target: at most 2% more. Every lmzip archive of the lmzip/ tar and of the stray
text is decompressed again and compared (`--verify-all`: every archive).
Sizes are exact; no timings are reported (the machine may be shared).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.bench import bench_baseline  # noqa: E402
from lmzip.pipeline import (  # noqa: E402
    CompressOptions,
    DecompressOptions,
    compress_stream,
    decompress_stream,
    load_codec,
    read_archive_info,
)

CORPUS = ROOT.parent / "shared" / "corpus"
CORPUS_TEXT = ["alice29.txt", "asyoulik.txt", "html", "lcet10.txt", "plrabn12.txt"]
STRAY_VALUES = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)]
BASELINES = ["gzip", "xz", "zstd"]
TAR = ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf"]


class Lmzip:
    def __init__(self) -> None:
        self.codec = load_codec(CompressOptions(threads=1))

    def compress(self, data: bytes) -> bytes:
        out = io.BytesIO()
        compress_stream(io.BytesIO(data), out, CompressOptions(threads=1, codec_factory=lambda _o: self.codec))
        return out.getvalue()

    def check(self, data: bytes, archive: bytes) -> None:
        out = io.BytesIO()
        decompress_stream(io.BytesIO(archive), out, DecompressOptions(threads=1, codec_factory=lambda _o: self.codec))
        if out.getvalue() != data:
            raise SystemExit("round trip FAILED")


def make_tar(root: Path, names: list[str]) -> tuple[bytes, bytes]:
    """(the tar of root/names, the files concatenated in the tar's order)."""
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "x.tar"
        subprocess.run([*TAR, str(tar), "-C", str(root), *names], check=True)
        listing = subprocess.run(["tar", "-tf", str(tar)], check=True, capture_output=True, text=True).stdout
        data = tar.read_bytes()
    order = [n for n in listing.splitlines() if not n.endswith("/")]
    return data, b"".join((root / n).read_bytes() for n in order)


def stray_text(text: bytes, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    for i in range(0, len(text), 1024):
        piece = text[i : i + 1024]
        k = rng.randrange(len(piece) + 1)
        out += piece[:k] + bytes([rng.choice(STRAY_VALUES)]) + piece[k:]
    return bytes(out)


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%"


def coders(archive: bytes) -> str:
    info = read_archive_info(io.BytesIO(archive))
    parts = ", ".join(f"{k} {v:,}" for k, v in info.coder_bytes.items() if v)
    kinds = ", ".join(f"{k} {v}" for k, v in info.codec_counts.items() if v)
    return f"chunks: {kinds}; bytes: {parts}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sets (a few files), for trying the script")
    ap.add_argument("--with-urls", action="store_true", help="add urls.10K to the corpus set")
    ap.add_argument("--verify-all", action="store_true", help="decompress every lmzip archive again")
    ap.add_argument("--parts", default="sources,corpus,stray", help="what to measure (default: all three)")
    ap.add_argument("--corpus-files", help="comma-separated corpus files (default: the five text files)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "tar_report.md")
    ap.add_argument("--readme-part", type=Path, default=ROOT / "docs" / "readme_parts" / "spans12.md")
    args = ap.parse_args()
    if shutil.which("tar") is None:
        raise SystemExit("tar not found")
    tracked = subprocess.run(["git", "ls-files", "lmzip"], cwd=ROOT, check=True, capture_output=True, text=True)
    sources = tracked.stdout.split()
    corpus = CORPUS_TEXT + (["urls.10K"] if args.with_urls else [])
    if args.corpus_files:
        corpus = args.corpus_files.split(",")
    parts = set(args.parts.split(","))
    if args.quick:
        sources = ["lmzip/errors.py", "lmzip/__init__.py", "lmzip/codecs.py"]
        corpus = []
    sets = [("lmzip/ sources (git ls-files lmzip)", ROOT, sources, True)] if "sources" in parts else []
    if corpus and CORPUS.is_dir() and "corpus" in parts:
        sets.append(("../shared/corpus text files: " + ", ".join(corpus), CORPUS, corpus, args.verify_all))
    lm = Lmzip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    rows, notes, verdicts = [], [], []
    # 31 KiB: the text and its stray version both fill 2 chunks (32 KiB + 32 would take a third)
    clean = (CORPUS / "alice29.txt").read_bytes()[: 31 << 10] if CORPUS.is_dir() and "stray" in parts else b""
    stray_rows = []
    if clean:
        dirty = stray_text(clean)
        a_clean, a_dirty = lm.compress(clean), lm.compress(dirty)
        lm.check(dirty, a_dirty)
        more = len(a_dirty) / len(a_clean) - 1
        extra = len(a_dirty) - len(a_clean)
        n = len(dirty) - len(clean)
        stray_rows = [
            f"| alice29.txt, first 31 KiB | {len(clean):,} | {len(a_clean):,} | {zstd_size(clean):,} |",
            f"| same, {n} stray bytes (one per KiB) | {len(dirty):,} | {len(a_dirty):,} | {zstd_size(dirty):,} |",
        ]
        verdicts.append(
            f"* stray bytes: +{extra} bytes for {n} stray bytes ({extra / n:.2f} bytes each), "
            f"{100 * more:+.2f}% (target <= +2%: {'met' if more <= 0.02 else 'NOT met'}); {coders(a_dirty)}"
        )
        print(*stray_rows, verdicts[-1], sep="\n", flush=True)

    for title, root, names, verify in sets:
        tar, cat = make_tar(root, names)
        a_tar, a_cat = lm.compress(tar), lm.compress(cat)
        if verify:
            lm.check(tar, a_tar)
        base = {n: bench_baseline(n, tar, "tar").compressed_bytes for n in BASELINES}
        base_cat = {n: bench_baseline(n, cat, "cat").compressed_bytes for n in BASELINES}
        rows.append(
            f"| {title}, tar | {len(tar):,} | **{len(a_tar):,}** | "
            + " | ".join(f"{base[n]:,}" for n in BASELINES)
            + f" | {pct(len(a_tar), base['xz'])} |"
        )
        rows.append(
            f"| same files concatenated | {len(cat):,} | **{len(a_cat):,}** | "
            + " | ".join(f"{base_cat[n]:,}" for n in BASELINES)
            + f" | {pct(len(a_cat), base_cat['xz'])} |"
        )
        notes.append(f"* {title}: {len(names)} files; tar archive {coders(a_tar)}")
        over = len(a_tar) / len(a_cat) - 1
        verdicts.append(
            f"* {title}: tar = {pct(len(a_tar), base['xz'])} of xz -9e (target <= 60%: "
            f"{'met' if len(a_tar) <= 0.6 * base['xz'] else 'NOT met'}); tar = concatenation "
            f"{100 * over:+.1f}% (target <= +15%: {'met' if over <= 0.15 else 'NOT met'})"
        )
        print(rows[-2], rows[-1], notes[-1], verdicts[-1], sep="\n", flush=True)

    head = "| input | bytes | lmzip | gzip -9 | xz -9e | zstd -19 | lmzip / xz |\n" + "| --- " + "| ---: " * 6 + "|"
    table = "\n".join([head, *rows])
    stray = ""
    if stray_rows:
        stray = "\n".join(["| input | bytes | lmzip | zstd -19 |", "| --- | ---: | ---: | ---: |", *stray_rows])
    text = (
        "# lmzip on tar streams and stray bytes\n\n"
        f"Generated by `scripts/tar_report.py` at commit {commit.stdout.strip()} (default model, 16 KiB chunks, "
        f"format v3 spans records). Tars: `{' '.join(TAR)}`.\n\n{table}\n\n"
        + "\n".join(notes)
        + "\n\n"
        + (f"Stray bytes from the 21 values without a single-byte token, one per KiB:\n\n{stray}\n\n" if stray else "")
        + "Targets:\n\n"
        + "\n".join(verdicts)
        + "\n"
    )
    part = (
        "### Tar streams and mixed input\n\n"
        "A chunk that is not pure text is coded as spans: text (the model, one token sequence across the\n"
        "chunk), runs of one byte (tar padding), binary (zstd); bytes without a token are escapes of a few\n"
        "bits. Measured by `scripts/tar_report.py` (`docs/tar_report.md`):\n\n"
        f"{table}\n\n" + "\n".join(verdicts) + "\n"
    )
    if not args.quick:
        args.out.write_text(text)
        args.readme_part.parent.mkdir(parents=True, exist_ok=True)
        args.readme_part.write_text(part)
        print(f"wrote {args.out} and {args.readme_part}")
    else:
        print(text)
    return 0


def zstd_size(data: bytes) -> int:
    return bench_baseline("zstd", data, "x").compressed_bytes


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
