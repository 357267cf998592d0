"""Regenerate (on purpose) or check the golden archives in tests/golden/archives/.

    python scripts/make_golden_archives.py            # rewrite the .lmz files and MANIFEST.json
    python scripts/make_golden_archives.py --check    # compress again, compare, print match / MISMATCH
    python scripts/make_golden_archives.py --threads 1 [--check]   # far faster on a busy machine

The golden archives pin what this build writes and reads: tests/test_golden_archives.py
decodes each one through the CLI and checks that compressing its original again gives
the very same bytes. Regenerate them only after a deliberate change that makes old
archives unreadable or different: a NUMERICS_VERSION bump (lmzip/engine/numerics.py,
together with scripts/make_golden_vector.py), a format version bump (VERSION in
lmzip/container.py), a different default model, or a deliberate change to how the
writer picks codecs. Then commit the new archives and MANIFEST.json with that change.

Originals: prose.txt (English written for this fixture) and code_py.txt (a frozen copy
of the start of lmzip/coder.py) are committed as they are; binary.bin (pseudo-random
bytes from a fixed seed, then zero bytes), mixed.tar (a tar of text with a stray byte
and a binary member: spans records), structs.bin (6-byte binary records: an lzma
record) and empty.bin are rewritten by this script.

tests/golden/archives/v2/, v3/ and v4/ keep the format version 2, 3 and 4 archives of the
same originals (v2: all but mixed.tar) with their MANIFEST.json: this build must still decode
them, and no longer writes them, so this script leaves them alone. After a format
version bump, move the current archives and MANIFEST.json into a new vN/ first; after a
memory numerics bump, likewise into numerics<N>/ (numerics6/: the v6 archives of prose,
code and mixed, which this build still decodes).
Every archive is made by the real CLI with the default model (`lmzip -c ARGS FILE`),
then decoded again as a check. prose and code must come out with lm records, or the
script fails: a golden archive that never exercises the model pins nothing.
The check exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_lm import structs  # noqa: E402  (tests/fake_lm.py: the lzma fixture's records)

GOLDEN = ROOT / "tests" / "golden" / "archives"
MANIFEST = GOLDEN / "MANIFEST.json"
BINARY_SEED = 20240611

# name -> (original file, CLI options recorded for compressing it, must the LM win a chunk)
FIXTURES: dict[str, tuple[str, list[str], bool]] = {
    # small chunks so that several lm chunks decode in lock step
    "prose": ("prose.txt", ["--chunk-size", "1024"], True),
    # numerics v4 (no file-wide memory): what lmzip wrote before v5, still written and read
    "prose-v4": ("prose.txt", ["--chunk-size", "1024", "--memory-block", "0"], True),
    "code": ("code_py.txt", [], True),
    "binary": ("binary.bin", [], False),
    "empty": ("empty.bin", [], False),
    # format v3: a tar of text with NUL padding, a stray byte without a token and a binary member
    "mixed": ("mixed.tar", ["--chunk-size", "2048"], True),
    # format v5: structured binary that lzma codes better than zstd -19 (an lzma record)
    "structs": ("structs.bin", [], True),
}
NEEDS = {"mixed": "spans", "structs": "lzma"}  # the record kind a fixture must come out with (default: lm)


ARCHIVE_NAMES = {"prose-v4": "prose-v4.txt.lmz"}  # archives not named after their original


def binary_original() -> bytes:
    """~1 KB that no model predicts: seeded pseudo-random bytes, then a few zero bytes."""
    return random.Random(BINARY_SEED).randbytes(1000) + bytes(24)


ENGINE_ARGS: list[str] = []  # e.g. ["--threads", "1"]: never changes the bytes, only the speed


def lmzip(*args: str, input: bytes | None = None) -> bytes:  # noqa: A002 - subprocess's name
    cmd = [sys.executable, "-m", "lmzip.cli", *ENGINE_ARGS, *args]
    p = subprocess.run(cmd, cwd=GOLDEN, input=input, capture_output=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"lmzip {' '.join(args)} failed ({p.returncode}): {p.stderr.decode().strip()}")
    return p.stdout


def build(name: str) -> tuple[bytes, dict]:
    """The archive of one fixture and its manifest entry (nothing written)."""
    from lmzip.pipeline import read_archive_info

    original_name, args, needs_lm = FIXTURES[name]
    original = (GOLDEN / original_name).read_bytes()
    archive = lmzip("-c", *args, "--", original_name)
    if lmzip("-dc", "-", input=archive) != original:
        raise SystemExit(f"{name}: the archive does not decode to its original")
    info = read_archive_info(io.BytesIO(archive))
    counts = {k: v for k, v in info.codec_counts.items() if v}
    kind = NEEDS.get(name, "lm")
    if needs_lm and not counts.get(kind):
        raise SystemExit(f"{name}: no {kind} record ({counts}); the fixture would not exercise the model")
    entry = {
        "original": original_name,
        "archive": ARCHIVE_NAMES.get(name, original_name + ".lmz"),
        "args": args,
        "original_size": len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "archive_size": len(archive),
        "archive_sha256": hashlib.sha256(archive).hexdigest(),
        "codec_counts": counts,
        "model": None
        if info.model is None
        else {
            "name": info.model.name,
            "model_hash": info.model.model_hash.hex(),
            "numerics_version": info.model.numerics_version,
            "context_window": info.model.context_window,
            "memory_group": info.model.memory_group,
            "memory_block": info.model.memory_block,
        },
    }
    return archive, entry


def mixed_original() -> bytes:
    """A deterministic GNU tar (mtime 0, uid/gid 0, mode 644): prose.txt with a stray 0x04,
    a short note, and 300 seeded pseudo-random bytes."""
    import tarfile

    prose = (GOLDEN / "prose.txt").read_bytes()
    members = {
        "a/prose.txt": prose[:700] + b"\x04" + prose[700:1400],
        "a/random.bin": random.Random(BINARY_SEED + 1).randbytes(300),
        "b/note.txt": b"Spans records code text, runs and binary apart.\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = len(members[name]), 0, 0o644, 0, 0
            tf.addfile(ti, io.BytesIO(members[name]))
    return buf.getvalue()


def write_originals() -> None:
    (GOLDEN / "binary.bin").write_bytes(binary_original())
    (GOLDEN / "structs.bin").write_bytes(structs(800, seed=BINARY_SEED + 2))  # 4.8 KB of 6-byte records
    (GOLDEN / "empty.bin").write_bytes(b"")
    (GOLDEN / "mixed.tar").write_bytes(mixed_original())


def versions() -> dict:
    import lmzip
    from lmzip.container import VERSION
    from lmzip.engine.numerics import NUMERICS_VERSION
    from lmzip.lm_codec import NUMERICS_MEMORY

    return {
        "lmzip_version": lmzip.__version__,
        "format_version": VERSION,
        "numerics_version": NUMERICS_VERSION,
        "memory_numerics_version": NUMERICS_MEMORY,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the stored archives, write nothing")
    ap.add_argument("--threads", type=int, help="engine threads (1 is much faster on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        ENGINE_ARGS[:] = ["--threads", str(args.threads)]

    if args.check:
        manifest = json.loads(MANIFEST.read_text())
        ok = True
        if binary_original() != (GOLDEN / "binary.bin").read_bytes():
            print("binary.bin: MISMATCH with its seed")
            ok = False
        if mixed_original() != (GOLDEN / "mixed.tar").read_bytes():
            print("mixed.tar: MISMATCH with its recipe")
            ok = False
        for key, want in versions().items():
            if key != "lmzip_version" and manifest[key] != want:
                print(f"MANIFEST.json: {key} {manifest[key]} != this build's {want}: regenerate")
                ok = False
        for name in FIXTURES:
            archive, _ = build(name)
            stored = (GOLDEN / manifest["archives"][name]["archive"]).read_bytes()
            same = archive == stored
            ok &= same
            print(f"{name}: {'match' if same else 'MISMATCH'} ({len(archive)} bytes, stored {len(stored)})")
        return 0 if ok else 1

    write_originals()
    manifest = {**versions(), "model": "default", "archives": {}}
    for name in FIXTURES:
        archive, entry = build(name)
        (GOLDEN / entry["archive"]).write_bytes(archive)
        manifest["archives"][name] = entry
        print(f"{name}: {entry['original_size']} -> {entry['archive_size']} bytes, chunks {entry['codec_counts']}")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {MANIFEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
