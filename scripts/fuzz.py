"""Fuzz the .lmz decoder: the container parser and the whole decode path.

Starts from valid archives (stored/zstd only, and with a fake LM codec so lm, spans
and model identity records are present) and mutates them: truncation at every offset,
a flipped byte at every offset, then random bit flips, byte changes, insertions,
deletions, huge varints, wrong versions, structure-aware record/header field edits
(with the fields' CRC of the end, or in format v2-v4 bases the index, agreeing or not)
and model identity record edits (numerics version, window, the file-wide memory's group
and block; all with their CRCs recomputed so the edit reaches the checks behind them),
record drops/duplicates/swaps, trailing garbage and splices of
two archives.

Every case goes through `decompress_stream` (seekable, or a pipe with short reads),
`read_archive_info` (seekable: the first archive), `read_archive_infos` (pipe: every
concatenated archive), the CLI's `-t` (in process, on a file) and the model lookup
(`resolve`): `lmzip info`'s text, and the real `find_model` on the archive's model
record against a scratch cache, under tests/access_guard.py. Some bases carry hostile
model names (paths, `..`, 255 bytes, control characters): the lookup must find the
model by hash inside the cache or raise an LmzipError, touch no file outside the cache,
and print the name only escaped.
The contract: each ends with the exact original (or, for a splice, the original of
one of the two parts; for archives put one after another, their originals one after
another) or an `LmzipError` subclass, within a per-case time limit, under an
address-space cap (so an allocation from an unchecked declared size shows up as
MemoryError); the paths must agree (a decode that succeeds implies that both info
paths succeed with the same sizes and that `-t` exits 0, and `-t` exits 0 only then).
Any other exception, a hang, a MemoryError or a disagreement is a failure:
the script minimizes it and prints a repro (base64), exiting 1.

    .venv/bin/python scripts/fuzz.py [--seconds 60] [--seed N] [--case-timeout 5] [--mem-gib 2]
    .venv/bin/python scripts/fuzz.py --repro BASE64     # run one input through every path

The fake LM of the tests (tests/fake_lm.py: 4 bits per known word, 12 per other byte)
stands in for the model; its decoder fails on garbage the way a real one might
(StopIteration, IndexError), which the pipeline must turn into an LmzipError.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from access_guard import AccessGuard  # noqa: E402
from fake_lm import FakeIdentity, FakeLM, structs, text  # noqa: E402
from fake_pipe import Pipe  # noqa: E402

import lmzip  # noqa: E402
from lmzip import cli, files  # noqa: E402
from lmzip.codecs import encode_plain  # noqa: E402
from lmzip.container import (  # noqa: E402
    COMPACT_FRAMING,
    END_SIZE,
    KNOWN_MODELS,
    MAX_CHUNK_SIZE,
    ArchiveReader,
    ArchiveWriter,
    Codec,
    leb128,
    uvarint,
)
from lmzip.errors import LmzipError  # noqa: E402
from lmzip.pipeline import (  # noqa: E402
    DecompressOptions,
    read_archive_info,
    read_archive_infos,
)


def fake_factory(options: object) -> FakeLM:
    """The fake LM; for decoding an archive with file-wide memory (numerics v5), one that
    claims the archive's memory group and block (the fake ignores them otherwise); for an
    archive that names the default model by number, one that claims its hashes."""
    block = getattr(options, "memory_block", 0)
    archive = getattr(options, "archive_model", None)
    if archive is not None and archive.model_hash == KNOWN_MODELS[1][1]:
        return known_factory(options)
    if block:
        return FakeLM(FakeIdentity(numerics_version=5, memory_group=options.memory_group, memory_block=block))  # type: ignore[attr-defined]
    return FakeLM()


def known_factory(options: object) -> FakeLM:
    """The fake LM under the default model's hashes: archives name it by number (kind 5)."""
    _, mhash, thash = KNOWN_MODELS[1]
    return FakeLM(FakeIdentity(model_hash=mhash, tokenizer_hash=thash))


def memory_factory(options: object) -> FakeLM:
    return FakeLM(FakeIdentity(numerics_version=5, memory_group=3, memory_block=16))


def compress(data: bytes, **kw: Any) -> bytes:
    kw.setdefault("codec_factory", fake_factory)
    return lmzip.compress(data, **kw)


def make_bases() -> dict[str, tuple[bytes, bytes]]:
    """name -> (original, archive): small valid archives of several shapes."""
    rng = random.Random(1)
    mixed = text(1200, 1) + rng.randbytes(400) + bytes(600) + text(700, 2) + b"\xff\xfe" * 50 + b"!"
    binary = random.Random(2).randbytes(300)
    spans_data = text(3000, 11) + bytes(200) + text(3000, 12) + b"\xff" + binary + text(2000, 13) + b"\xff\0"
    specs: dict[str, tuple[bytes, dict]] = {
        "empty": (b"", {"use_lm": False}),
        "empty-named": (b"", {"use_lm": False, "name": "e.txt", "mtime": 0}),
        "one-byte": (b"x", {"use_lm": False}),
        "one-byte-lm": (b"x", {"chunk_size": 1}),
        "text-nolm": (text(2000, 3), {"chunk_size": 700, "use_lm": False}),
        "random": (rng.randbytes(1500), {"chunk_size": 400, "batch": 2, "use_lm": False}),
        "text-lm": (text(1500, 4), {"chunk_size": 256, "batch": 2}),
        "multi-group": (mixed, {"chunk_size": 200, "batch": 3, "name": "f.txt", "mtime": -7}),
        "model-later": (rng.randbytes(500) + text(1200, 5), {"chunk_size": 250, "batch": 2}),
        "zeros-named": (bytes(5000), {"chunk_size": 1000, "batch": 2, "use_lm": False, "name": "z", "mtime": 1 << 40}),
        "chunk-1": (b"abc", {"chunk_size": 1, "use_lm": False}),
        "zeros-chunk-1": (bytes(100), {"chunk_size": 1, "use_lm": False}),  # zstd runs of 32 one-byte chunks
        "max-chunk": (text(300, 6), {"chunk_size": MAX_CHUNK_SIZE, "use_lm": False}),
        "max-chunk-lm": (text(1000, 7), {"chunk_size": MAX_CHUNK_SIZE}),
        # format v3 spans records: TEXT (with 0xFF escapes), RUN and BINARY spans; lm records beside them
        "spans-lm": (spans_data, {"chunk_size": 2048, "batch": 2}),
        # numerics v5: the model record carries a memory group (3 chunks) and block; decoding
        # hands the codec one memory group at a time
        "memory-lm": (mixed, {"chunk_size": 200, "batch": 3, "codec_factory": memory_factory}),
        # format v5: lzma records (structured binary, where LZMA2 beats zstd -19)
        "lzma": (structs(1500) + text(700, 9), {"chunk_size": 2048, "batch": 2}),
        # format v4: the model as a reference by number (kind 5), not by its hashes
        "known-model": (text(1500, 8), {"chunk_size": 256, "batch": 2, "codec_factory": known_factory}),
    }
    bases = {name: (data, compress(data, **kw)) for name, (data, kw) in specs.items()}
    data, archive = bases["text-lm"]
    for name, model_name in HOSTILE_NAMES.items():  # what no writer stores, but an archive may say
        bases[name] = (data, with_model_name(archive, data, model_name))
    for name in ("multi-group", "spans-lm"):  # format v4 (index and trailer), which readers still meet
        data, archive = bases[name]
        bases[f"{name}-v4"] = (data, rewritten(archive, data, version=4))
    return bases


HOSTILE_NAMES = {
    "name-path": "/etc/passwd",
    "name-dotdot": "../" * 85,  # 255 bytes, the longest name the format holds
    "name-control": "..\\x\x1b[2J\r\n\x00\x07\u202e~/.ssh",
}


def with_model_name(archive: bytes, original: bytes, name: str) -> bytes:
    """`archive` (of `original`) with its model record's name replaced, every CRC recomputed."""
    return rewritten(archive, original, name=name)


def rewritten(archive: bytes, original: bytes, name: str | None = None, version: int | None = None) -> bytes:
    """`archive` (of `original`) written again, every CRC recomputed: with its model
    record's name replaced by `name`, in format `version` (None: as they are; before v5,
    lzma records become zstd or stored ones)."""
    reader = ArchiveReader(io.BytesIO(archive))
    out = io.BytesIO()
    header = reader.header if version is None else dataclasses.replace(reader.header, version=version)
    writer = ArchiveWriter(out, header)
    pos = 0
    for rec, payload in reader.records():
        if rec.codec in (Codec.LM, Codec.SPANS) and not writer.has_model:
            assert reader.model is not None
            model = reader.model if name is None else dataclasses.replace(reader.model, name=name)
            writer.add_model(model)
        data = original[pos : pos + rec.original_length]
        if rec.codec == Codec.LZMA and header.version < COMPACT_FRAMING:
            plain = encode_plain(data)
            writer.add(plain.codec, data, plain.payload)
        else:
            writer.add(rec.codec, data, payload, rec.token_count)
        pos += rec.original_length
    writer.close(zlib.crc32(original))
    return out.getvalue()


# ---------------------------------------------------------------- archive structure (tolerant)


@dataclass
class Layout:
    """Where things are in a *valid* base archive, for structure-aware mutations."""

    header_end: int  # offset after the header CRC
    records: list[tuple[int, int, list[int], int]]  # (offset, kind, field values, size)
    index_start: int  # where the records end: the end mark (format v5) or the index (v2-v4)
    version: int


def _varint_at(b: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        c = b[pos]
        value |= (c & 0x7F) << shift
        pos += 1
        shift += 7
        if not c & 0x80:
            return value, pos


def header_len(b: bytes) -> int | None:
    """Offset just after the header's CRC field, parsed leniently (None if unparseable)."""
    try:
        if len(b) < 6:
            return None
        flags = b[5]
        _, pos = _varint_at(b, 6)
        if flags & 1:
            n, pos = _varint_at(b, pos)
            pos += n
        if flags & 2:
            _, pos = _varint_at(b, pos)
        return pos + 4 if pos + 4 <= len(b) else None
    except IndexError:
        return None


def layout_of(archive: bytes) -> Layout:
    info = read_archive_info(io.BytesIO(archive))
    hend = header_len(archive)
    assert hend is not None
    records = []
    for r in info.records:
        kind = archive[r.offset]
        n_fields = FIELD_COUNTS[kind]
        values, pos = [], r.offset + 1
        for _ in range(n_fields):
            v, pos = _varint_at(archive, pos)
            values.append(v)
        records.append((r.offset, kind, values, r.size))
    version = archive[4]
    if version >= COMPACT_FRAMING:
        return Layout(hend, records, len(archive) - END_SIZE, version)
    (index_size,) = struct.unpack_from("<I", archive, len(archive) - 12)
    return Layout(hend, records, len(archive) - 16 - index_size, version)


def pack_fields(kind: int, values: list[int]) -> bytes:
    return bytes([kind]) + b"".join(leb128(v) for v in values)


def fix_header_crc(b: bytes) -> bytes:
    end = header_len(b)
    if end is None:
        return b
    return b[: end - 4] + struct.pack("<I", zlib.crc32(b[: end - 4])) + b[end:]


FIELD_COUNTS = {0: 1, 1: 2, 2: 3, 3: 1, 4: 3, 5: 1, 6: 2}  # varints after each record kind byte


def fields_crc(b: bytes, pos: int) -> int | None:
    """CRC32 of the fields of the records from `pos` to the end mark, walked leniently
    (None where they do not parse): what a format v5 end holds."""
    crc = 0
    try:
        while b[pos] != 0x4C:
            count = FIELD_COUNTS.get(b[pos])
            if count is None:
                return None
            values, p = [], pos + 1
            for _ in range(count):
                v, p = _varint_at(b, p)
                values.append(v)
            crc = zlib.crc32(b[pos:p], crc)
            pos = p + 4 + (values[0] if b[pos] in (0, 3, 5) else values[1])
        return crc
    except IndexError:
        return None


def fix_tail(b: bytes, index_start: int | None = None) -> bytes:
    """Format v5: recompute the end's CRC of the record fields (where they parse).
    Versions 2-4: recompute the trailer's index size (when index_start is given) and its
    tail CRC."""
    if len(b) > 5 and b[4] >= COMPACT_FRAMING:
        hend = header_len(b)
        crc = None if hend is None or len(b) < hend + END_SIZE else fields_crc(b, hend)
        return b if crc is None else b[:-8] + struct.pack("<I", crc) + b[-4:]
    if len(b) < 16:
        return b
    crc, index_size = struct.unpack_from("<II", b, len(b) - 16)
    if index_start is not None:
        index_size = len(b) - 16 - index_start
    start = len(b) - 16 - index_size
    if start < 0:
        return b
    index = b[start : len(b) - 16]
    crc8 = struct.pack("<II", crc, index_size)
    return b[:start] + index + crc8 + struct.pack("<I", zlib.crc32(crc8, zlib.crc32(index))) + b[-4:]


def rebuild(
    archive: bytes,
    lay: Layout,
    records: list[tuple[int, list[int], bytes]],
    count: int | None = None,
    index: list[tuple[int, list[int], bytes]] | None = None,
) -> bytes:
    """Re-assemble an archive from (kind, field values, crc+payload), with an index of
    `index` (default: the same records) whose count `count` may override, and a fresh
    tail CRC; format v5: an end whose CRC covers the fields of `index` (default: the
    records; `count` plays no part). The end or trailer keeps the base's whole-stream CRC."""
    body = bytearray(archive[: lay.header_end])
    for kind, values, rest in records:
        body += pack_fields(kind, values) + rest
    entries = records if index is None else index
    if lay.version >= COMPACT_FRAMING:
        crc = zlib.crc32(b"".join(pack_fields(kind, values) for kind, values, _ in entries))
        return bytes(body) + bytes([0x4C]) + archive[-12:-8] + struct.pack("<I", crc) + b"LMZE"
    idx = bytearray([0x4C]) + leb128(len(entries) if count is None else count)
    for kind, values, _ in entries:
        idx += pack_fields(kind, values)
    trailer_crc = archive[len(archive) - 16 : len(archive) - 12]
    out = bytes(body) + bytes(idx) + trailer_crc + bytes(8) + b"LMZE"
    return fix_tail(out, len(body))


def split_records(archive: bytes, lay: Layout) -> list[tuple[int, list[int], bytes]]:
    out = []
    for off, kind, values, size in lay.records:
        head = len(pack_fields(kind, values))
        out.append((kind, list(values), archive[off + head : off + size]))
    return out


MODEL_KINDS = (3, 5)  # the model identity record (hashes) and the model reference (format v4)


def model_body_fields(body: bytes, kind: int = 3) -> tuple[bytes, list[int], bytes] | None:
    """(what names the model: the two hashes (kind 3) or the model number varint (kind 5),
    [numerics, window] plus [memory group, memory block] when numerics >= 5, what follows:
    name length + name (kind 3), nothing (kind 5)) of a model record's body; None if it
    does not parse."""
    try:
        pos = start = 64 if kind == 3 else _varint_at(body, 0)[1]
        values = []
        for _ in range(2):
            v, pos = _varint_at(body, pos)
            values.append(v)
        if values[0] >= 5:
            for _ in range(2):
                v, pos = _varint_at(body, pos)
                values.append(v)
        return body[:start], values, body[pos:]
    except IndexError:
        return None


def with_model_fields(archive: bytes, lay: Layout, values: list[int], number: int | None = None) -> bytes:
    """`archive` with its model record's numerics, window and memory fields replaced by
    `values` ([numerics, window] or [numerics, window, group, block], written as given,
    whatever the numerics version says) and, for a model reference, its model number by
    `number` (None: kept); body CRC, record length and index recomputed."""
    recs = split_records(archive, lay)
    i = next(k for k, r in enumerate(recs) if r[0] in MODEL_KINDS)
    kind = recs[i][0]
    parsed = model_body_fields(recs[i][2][4:], kind)
    assert parsed is not None, "a base archive's model record parses"
    names, _, name = parsed
    if kind == 5 and number is not None:
        names = leb128(number)
    body = names + b"".join(leb128(v) for v in values) + name
    recs[i] = (kind, [len(body)], struct.pack("<I", zlib.crc32(body)) + body)
    return rebuild(archive, lay, recs)


# ---------------------------------------------------------------- mutations

HUGE = [
    b"\xff" * 9 + b"\x01",  # 2**64
    b"\xff" * 9 + b"\x7f",
    b"\x80" * 10 + b"\x00",  # 11 bytes
    b"\x80" * 11,  # never ends
    b"\x80\x00",  # overlong
    b"\x00",
    uvarint(2**63),
    uvarint(2**32 - 1),
    uvarint(2**32),
    uvarint(64 << 20),
    uvarint((64 << 20) + 1),
    uvarint(4095),
    uvarint(4096),
]


def interesting(v: int, rng: random.Random) -> int:
    return max(
        0,
        rng.choice(
            [
                0,
                1,
                2,
                v - 1,
                v + 1,
                v * 2,
                v + 64,
                v + 65,
                66,
                67,
                331,
                332,
                4096,
                1 << 20,
                64 << 20,
                (64 << 20) + 1,
                2**32 - 1,
                2**32,
                2**63,
                2**64 - 1,
                2**64,
                rng.randrange(1 << 16),
            ]
        ),
    )


@dataclass
class Mutator:
    bases: dict[str, tuple[bytes, bytes]]
    layouts: dict[str, Layout]
    rng: random.Random

    def random_case(self) -> tuple[bytes, list[str], set[bytes]]:
        """(mutated blob, mutation trace, outputs a successful decode may produce)."""
        rng = self.rng
        name = rng.choice(list(self.bases))
        original, blob = self.bases[name]
        allowed = {original}
        trace = [name]
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            kind = rng.choice(
                [
                    "cut",
                    "flip",
                    "byte",
                    "insert",
                    "delete",
                    "varint",
                    "field",
                    "field",
                    "header",
                    "version",
                    "records",
                    "count",
                    "garbage",
                    "splice",
                    "dup",
                    "model",
                ]
            )
            blob, desc, extra = self.mutate(kind, name, blob)
            allowed |= extra | self.concatenations(blob, allowed)
            trace.append(desc)
        if rng.random() < 0.3:  # let random damage past the CRC gates
            blob = fix_tail(fix_header_crc(blob))
            trace.append("fixcrc:")
        return blob, trace, allowed

    def concatenations(self, blob: bytes, allowed: set[bytes]) -> set[bytes]:
        """Outputs of blob as concatenated archives (valid, like gzip members): when it starts
        or ends with a whole base archive, that base's original before or after any output
        the rest may give (an appended archive, a splice at the very ends, a dup of a tiny
        archive)."""
        whole = {arc: orig for orig, arc in self.bases.values()}
        out: set[bytes] = set()
        for arc, orig in whole.items():
            if len(blob) > len(arc) and blob.endswith(arc):
                rest = blob[: -len(arc)]
                out |= {a + orig for a in allowed | ({whole[rest]} if rest in whole else set())}
            if len(blob) > len(arc) and blob.startswith(arc):
                rest = blob[len(arc) :]
                out |= {orig + a for a in allowed | ({whole[rest]} if rest in whole else set())}
        return out

    def mutate(self, kind: str, name: str, blob: bytes) -> tuple[bytes, str, set[bytes]]:
        rng = self.rng
        n = len(blob)
        pos = rng.randrange(n + 1)
        if kind == "cut":
            return blob[:pos], f"cut:{pos}", set()
        if kind in ("flip", "byte") and n:
            pos = min(pos, n - 1)
            new = blob[pos] ^ (1 << rng.randrange(8)) if kind == "flip" else rng.randrange(256)
            return blob[:pos] + bytes([new]) + blob[pos + 1 :], f"{kind}:{pos}={new}", set()
        if kind == "insert":
            ins = rng.randbytes(rng.randint(1, 16)) if rng.random() < 0.5 else blob[rng.randrange(n + 1) :][:16]
            return blob[:pos] + ins + blob[pos:], f"insert:{pos}+{len(ins)}", set()
        if kind == "delete":
            k = rng.randint(1, 16)
            return blob[:pos] + blob[pos + k :], f"delete:{pos}-{k}", set()
        if kind == "varint":
            v, k = rng.choice(HUGE), rng.randint(0, 3)
            return blob[:pos] + v + blob[pos + k :], f"varint:{pos}={v.hex()}/{k}", set()
        lay = self.layouts[name]
        if blob != self.bases[name][1]:  # structure-aware edits need the intact base
            return self.mutate(rng.choice(["cut", "flip", "byte", "insert", "delete", "varint"]), name, blob)
        if kind == "version":
            v = rng.choice([0, 1, 2, 3, 4, 5, 6, 0x7F, 0xFF])  # 2: a v2 archive cannot hold spans records
            out = blob[:4] + bytes([v]) + blob[5:]
            return (fix_header_crc(out) if rng.random() < 0.5 else out), f"version:{v}", set()
        if kind == "header":
            # chunk size, flags, name length, mtime: rewrite the header with its CRC fixed
            hend = lay.header_end
            flags = blob[5]
            cs, p = _varint_at(blob, 6)
            fields: list[bytes] = [leb128(cs)]
            if flags & 1:
                ln, p2 = _varint_at(blob, p)
                fields.append(leb128(ln) + blob[p2 : p2 + ln])
                p = p2 + ln
            if flags & 2:
                mt, p = _varint_at(blob, p)
                fields.append(leb128(mt))
            which = rng.randrange(4)
            if which == 0:
                fields[0] = leb128(interesting(cs, rng))
            elif which == 1:
                flags = rng.choice([flags ^ 1, flags ^ 2, flags | 4, 0x80, 3])
            elif which == 2:
                fields.insert(1, leb128(interesting(10, rng)))
            else:
                fields.append(rng.choice(HUGE))
            head = blob[:5] + bytes([flags]) + b"".join(fields)
            out = head + struct.pack("<I", zlib.crc32(head)) + blob[hend:]
            return out, f"header:{which}", set()
        recs = split_records(blob, lay)
        if kind == "field" and recs:
            i = rng.randrange(len(recs))
            k, values, rest = recs[i]
            j = rng.randrange(len(values))
            values = list(values)
            values[j] = interesting(values[j], rng)
            where = rng.choice(["both", "both", "record", "index"])
            new = list(recs)
            new[i] = (k if rng.random() < 0.9 else rng.choice([0, 1, 2, 3, 4, 0x4C, 0xFF]), values, rest)
            if where == "both":
                out = rebuild(blob, lay, new)
            elif where == "record":
                out = rebuild(blob, lay, new, index=recs)
            else:
                out = rebuild(blob, lay, recs, index=new)
            return out, f"field:r{i}.{j}={values[j]}/{where}", set()
        if kind == "records" and recs:
            op = rng.choice(["drop", "dup", "swap", "move-model"])
            new = list(recs)
            i = rng.randrange(len(new))
            if op == "drop":
                del new[i]
            elif op == "dup":
                new.insert(i, new[i])
            elif op == "swap" and len(new) > 1:
                j = rng.randrange(len(new))
                new[i], new[j] = new[j], new[i]
            elif op == "move-model":
                models = [r for r in new if r[0] in MODEL_KINDS]
                new = [r for r in new if r[0] not in MODEL_KINDS]
                new.insert(rng.randrange(len(new) + 1), models[0] if models else recs[i])
            return rebuild(blob, lay, new), f"records:{op}@{i}", set()
        if kind == "model" and any(r[0] in MODEL_KINDS for r in recs):
            # numerics version, window and the memory group and block of the model record
            # (numerics >= 5), and a model reference's number, body CRC fixed: past the CRC
            # gate to the field checks
            model = next(r for r in recs if r[0] in MODEL_KINDS)
            parsed = model_body_fields(model[2][4:], model[0])
            assert parsed is not None
            values = parsed[1]
            if model[0] == 5 and rng.random() < 0.3:
                number = rng.choice([0, 2, interesting(1, rng), 2**32, 2**63])
                return with_model_fields(blob, lay, values, number), f"model-number:{number}", set()
            j = rng.randrange(len(values) + 1)
            if j == len(values):  # memory fields added or dropped, numerics kept
                values = values[:2] if len(values) > 2 else values + [rng.choice([1, 3, 32]), rng.choice([1, 12])]
            else:
                values = list(values)
                new = interesting(values[j], rng)
                values[j] = rng.choice([4, 5, 6, new]) if j == 0 else new
            return with_model_fields(blob, lay, values), f"model:{values}", set()
        if kind == "count":  # the index's record count (v2-v4), the end's CRCs (v5)
            if lay.version >= COMPACT_FRAMING:
                at = n - rng.choice([8, 12])
                crc = rng.choice([0, rng.getrandbits(32), int.from_bytes(blob[at : at + 4], "little") ^ 1])
                return blob[:at] + struct.pack("<I", crc) + blob[at + 4 :], f"end-crc:{n - at}={crc}", set()
            c = interesting(len(recs), rng)
            return rebuild(blob, lay, recs, count=c), f"count:{c}", set()
        if kind == "garbage":
            other = self.bases[rng.choice(list(self.bases))][1]
            g = rng.choice([rng.randbytes(rng.randint(1, 20)), other, other[-16:], b"\0", blob[-16:]])
            return blob + g, f"garbage:{len(g)}", set()
        if kind == "splice":
            oname = rng.choice(list(self.bases))
            oorig, other = self.bases[oname]
            olay = self.layouts[oname]
            cuts_a = [rng.randrange(n + 1), lay.header_end, lay.index_start, *(r[0] for r in lay.records)]
            cuts_b = [rng.randrange(len(other) + 1), olay.header_end, olay.index_start, *(r[0] for r in olay.records)]
            i, j = rng.choice(cuts_a), rng.choice(cuts_b)
            out = blob[:i] + other[j:]
            if rng.random() < 0.5:
                out = fix_tail(out)
            return out, f"splice:{name}[:{i}]+{oname}[{j}:]", {oorig}
        if kind == "dup":
            i = rng.randrange(n + 1)
            k = rng.randint(1, 64)
            return blob[:pos] + blob[i : i + k] + blob[pos:], f"dup:{i}+{k}@{pos}", set()
        return self.mutate("insert", name, blob)


# ---------------------------------------------------------------- running one case through every path


class Timeout(BaseException):  # not an Exception: nothing in lmzip may swallow it
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise Timeout()


@dataclass
class Outcome:
    ok: bool
    label: str  # "ok", "ok-other", the LmzipError subclass name, or FAIL:...
    value: object = None
    failure: str | None = None  # set on a contract violation


def _call(fn: Callable[[], object], limit: float) -> Outcome:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        value = fn()
        return Outcome(True, "ok", value)
    except Timeout:
        return Outcome(False, "FAIL:hang", failure=f"no result within {limit:g} s")
    except LmzipError as e:
        return Outcome(False, type(e).__name__, str(e))
    except MemoryError:
        return Outcome(False, "FAIL:MemoryError", failure="MemoryError (allocation beyond the address-space cap)")
    except BaseException as e:  # noqa: BLE001 - everything else is a finding
        if isinstance(e, KeyboardInterrupt):
            raise
        return Outcome(False, f"FAIL:{type(e).__name__}", failure=f"{type(e).__name__}: {e}")
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)


def _decode(blob: bytes, batch: int, pipe: bool) -> bytes:
    out = io.BytesIO()
    src = Pipe(blob) if pipe else io.BytesIO(blob)
    lmzip.Decompressor(batch=batch, codec_factory=fake_factory).copy_stream(src, out)
    return out.getvalue()


def _cli_options(s: files.Settings) -> DecompressOptions:
    return DecompressOptions(model=s.model, batch=s.batch, codec_factory=fake_factory)  # type: ignore[arg-type]


_TMP: list[str] = []  # a scratch directory, made on first use


def _cli_test(blob: bytes) -> tuple[int, str]:
    path = os.path.join(_scratch(), "case.lmz")
    with open(path, "wb") as f:
        f.write(blob)
    err = io.StringIO()
    saved = files._decompress_options
    files._decompress_options = _cli_options  # the fake LM instead of loading a model
    try:
        with contextlib.redirect_stderr(err):
            cli.main(["-t", "-q", path])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        files._decompress_options = saved
    return code, err.getvalue()


def _scratch() -> str:
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="lmzip-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    return _TMP[0]


@contextlib.contextmanager
def _cache_home(root: str) -> Iterator[None]:
    """XDG_CACHE_HOME = root for the lookups inside (the model cache), restored after."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = root
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


def _resolve(blob: bytes) -> object:
    """What `lmzip info` prints of the names, and where the real loader finds the archive's model: in an
    empty cache (must be a one-line ModelNotFoundError) and in a scratch cache holding one
    converted model with the fake LM's hashes (must be that entry, or an LmzipError for
    other hashes), each under an AccessGuard that refuses every file outside that cache.
    None: the archive has no model record."""
    info = read_archive_info(io.BytesIO(blob))
    # The named parts only: the chunk table of a crafted archive may have millions of rows.
    shown = cli._format_info("case.lmz", cli.to_jsonable({"header": info.header, "model": info.model}))
    if not all(c.isprintable() for c in shown.replace("\n", "")):
        raise AssertionError(f"info prints an unescaped character: {shown!r}")
    if info.model is None:
        return None
    from lmzip.engine import loader  # imports torch: only on the first case with a model record
    from lmzip.errors import ModelNotFoundError

    if (info.model.model_hash, info.model.tokenizer_hash) == KNOWN_MODELS[1][1:]:
        return _resolve_default(loader, info.model)
    empty, cache = os.path.join(_scratch(), "cache-empty"), os.path.join(_scratch(), "cache")
    entry = Path(cache, "lmzip", "models", "fake")
    if not entry.is_dir():
        entry.mkdir(parents=True)
        ident = FakeIdentity()
        meta = {"name": ident.name, "model_hash": ident.model_hash.hex(), "tokenizer_hash": ident.tokenizer_hash.hex()}
        (entry / "model.json").write_text(json.dumps(meta))
    for root in (empty, cache):
        found = None
        with _cache_home(root), AccessGuard(allow=[root]) as guard:
            try:
                found = loader.find_model(info.model)
            except ModelNotFoundError as e:
                if not str(e).isprintable() or "pass --model PATH" not in str(e):
                    raise AssertionError(f"not one printable line with the hint: {e!r}") from None
                if root == cache:
                    raise
            finally:
                if guard.violations:
                    raise AssertionError(f"the lookup touched {guard.violations}")
        if root == empty and found is not None:
            raise AssertionError(f"found {found} in an empty cache")
    if found != entry:
        raise AssertionError(f"found {found}, not the cache entry")
    return found


def _resolve_default(loader: Any, model: Any) -> object:  # noqa: ANN401  (lmzip.engine.loader, ModelInfo)
    """An archive with the default model's hashes (a model reference, or a full record with
    them): the lookup must end at the installed default model (FORMAT.md, step 3), reading
    nothing but an empty cache and that package; the conversion itself is not run."""
    empty = os.path.join(_scratch(), "cache-empty")
    installed = loader.default_model_path()
    saved_convert = loader._converted
    loader._converted = lambda source: ("converted", source)
    try:
        with _cache_home(empty), AccessGuard(allow=[empty, str(installed.parent)]) as guard:
            found = loader.find_model(model)
        if guard.violations:
            raise AssertionError(f"the lookup touched {guard.violations}")
    finally:
        loader._converted = saved_convert
    if found != ("converted", installed):
        raise AssertionError(f"the default model's hashes found {found}, not the installed default model")
    return found


PATHS = ("decode", "info-seek", "info-pipe", "cli-t", "resolve")


def check(
    blob: bytes,
    allowed: set[bytes],
    batch: int = 32,
    pipe: bool = False,
    limit: float = 5.0,
    paths: tuple[str, ...] = PATHS,
) -> dict[str, Outcome]:
    """Runs blob through the paths; each Outcome's `failure` names a contract violation."""
    res: dict[str, Outcome] = {}
    if "decode" in paths:
        d = res["decode"] = _call(lambda: _decode(blob, batch, pipe), limit)
        if d.ok and d.value not in allowed:
            d.label, d.failure = "FAIL:wrong-output", f"decoded {len(d.value)} bytes that are no original"  # type: ignore[arg-type]
    if "info-seek" in paths:
        res["info-seek"] = _call(lambda: read_archive_info(io.BytesIO(blob)), limit)
    if "info-pipe" in paths:  # every concatenated archive's info, by walking the records
        res["info-pipe"] = _call(lambda: read_archive_infos(Pipe(blob)), limit)  # type: ignore[arg-type]
    if "cli-t" in paths:
        c = res["cli-t"] = _call(lambda: _cli_test(blob), limit)
        if c.ok:
            code, err = c.value  # type: ignore[misc]
            c.label = f"exit{code}"
            bad = [w for w in ("internal error", "MemoryError", "RecursionError", "Traceback") if w in err]
            if bad or code not in (0, 1) or (code == 1) != bool(err.strip()) or err.count("\n") > 1:
                c.label, c.failure = "FAIL:cli", f"exit {code}, stderr {err!r}"
    if "resolve" in paths:
        r = res["resolve"] = _call(lambda: _resolve(blob), limit)
        if r.ok:
            r.label = "none" if r.value is None else "found"
    d, s, p, c = (res.get(k) for k in PATHS[:4])
    if d and d.ok and not d.failure:
        # info-seek describes the first archive, info-pipe every one (concatenations)
        for o, first_only in ((s, True), (p, False)):
            if o is None:
                continue
            if not o.ok:
                o.failure = o.failure or f"decode succeeded but info failed: {o.value}"
                o.label = o.label if o.label.startswith("FAIL") else "FAIL:disagree"
                continue
            infos = [o.value] if first_only else list(o.value)  # type: ignore[arg-type]
            pos, good = 0, True
            for info in infos:
                part = d.value[pos : pos + info.original_size]  # type: ignore[index]
                good &= len(part) == info.original_size and info.crc == zlib.crc32(part)
                pos += info.original_size
            if not good or (not first_only and pos != len(d.value)):  # type: ignore[arg-type]
                o.label, o.failure = "FAIL:disagree", "info sizes/CRC differ from the decoded data"
        if c and c.ok and c.label != "exit0":
            c.label, c.failure = "FAIL:disagree", f"decode succeeded but -t failed: {c.value}"
    if d and not d.ok and c and c.label == "exit0":
        c.label, c.failure = "FAIL:disagree", f"-t passed but decode failed: {d.label}: {d.value}"
    if s and p and p.ok and not p.failure:
        if not s.ok:
            s.label, s.failure = "FAIL:disagree", f"pipe info ok but seekable info failed: {s.value}"
        elif not s.failure and dataclasses.replace(s.value, compressed_size=0) != dataclasses.replace(  # type: ignore
            p.value[0],  # type: ignore[index]
            compressed_size=0,
        ):
            s.label, s.failure = "FAIL:disagree", "seekable and pipe info differ"
    return res


def signature(res: dict[str, Outcome]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, o.label) for k, o in res.items() if o.failure))


# ---------------------------------------------------------------- minimizing


def minimize(
    blob: bytes, allowed: set[bytes], sig: tuple, batch: int, pipe: bool, limit: float, budget: float = 20.0
) -> bytes:
    """Delta debugging on bytes: drop blocks while the failure signature stays the same."""
    deadline = time.monotonic() + budget
    if any(label == "FAIL:disagree" for _, label in sig):

        def same(b: bytes) -> bool:
            return signature(check(b, allowed, batch, pipe, limit)) == sig

    else:  # one failing path is enough (a hang costs `limit` per try)
        target = sig[0]

        def same(b: bytes) -> bool:
            return target in signature(check(b, allowed, batch, pipe, limit, (target[0],)))

    step = max(1, len(blob) // 2)
    while step >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(blob) and time.monotonic() < deadline:
            cand = blob[:i] + blob[i + step :]
            if same(cand):
                blob, changed = cand, True
            else:
                i += step
        if not changed:
            step //= 2
    return blob


# ---------------------------------------------------------------- driver


@dataclass
class Stats:
    cases: int = 0
    outcomes: Counter = dataclasses.field(default_factory=Counter)  # (path, label) -> n
    mutations: Counter = dataclasses.field(default_factory=Counter)
    failures: dict = dataclasses.field(default_factory=dict)  # signature -> (blob, trace, res, allowed, batch, pipe)
    peak_alloc: tuple[int, int, str] = (0, 0, "")  # traced peak bytes, input size, trace


class Watchdog(threading.Thread):
    """Backstop for a hang inside C code, where SIGALRM cannot interrupt: prints the case and exits."""

    def __init__(self, limit: float) -> None:
        super().__init__(daemon=True)
        self.limit = limit
        self.case: tuple[float, bytes, list[str]] | None = None

    def run(self) -> None:
        while True:
            time.sleep(0.5)
            case = self.case
            if case and time.monotonic() - case[0] > 4 * self.limit * len(PATHS):
                print(
                    f"\nHANG (watchdog): {' '.join(case[2])}\nrepro: {base64.b64encode(case[1]).decode()}", flush=True
                )
                os._exit(3)


def run_case(
    st: Stats,
    dog: Watchdog,
    blob: bytes,
    trace: list[str],
    allowed: set[bytes],
    batch: int,
    pipe: bool,
    limit: float,
    measure: bool = False,
) -> None:
    dog.case = (time.monotonic(), blob, trace)
    if measure:
        tracemalloc.start()
    res = check(blob, allowed, batch, pipe, limit)
    if measure:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if peak > st.peak_alloc[0]:
            st.peak_alloc = (peak, len(blob), " ".join(trace))
    dog.case = None
    st.cases += 1
    for k, o in res.items():
        st.outcomes[(k, o.label)] += 1
    for m in trace[1:]:
        st.mutations[m.split(":")[0]] += 1
    sig = signature(res)
    if sig and sig not in st.failures:
        st.failures[sig] = (blob, trace, res, allowed, batch, pipe)
        print(f"FAILURE {sig} after {st.cases} cases: {' '.join(trace)}", flush=True)


def systematic(bases: dict[str, tuple[bytes, bytes]], rng: random.Random):
    """Truncation and one changed byte at every offset, every version byte, trailing bytes."""
    for name, (orig, arc) in bases.items():
        for cut in range(len(arc)):
            yield arc[:cut], [name, f"cut:{cut}"], {orig}
        yield arc, [name, "intact:"], {orig}
    for name, (orig, arc) in bases.items():
        for pos in range(len(arc)):
            new = arc[pos] ^ (1 << rng.randrange(8))
            yield arc[:pos] + bytes([new]) + arc[pos + 1 :], [name, f"flip:{pos}={new}"], {orig}
        for v in (0, 1, 3, 255):
            yield arc[:4] + bytes([v]) + arc[5:], [name, f"version:{v}"], {orig}
        yield arc + b"\0", [name, "garbage:1"], {orig}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        for d in _TMP:
            shutil.rmtree(d, ignore_errors=True)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--case-timeout", type=float, default=5.0, help="seconds per path per case")
    ap.add_argument("--mem-gib", type=float, default=2.0, help="RLIMIT_AS cap (0: none)")
    ap.add_argument("--repro", metavar="BASE64", help="run one input through every path and report")
    args = ap.parse_args(argv)

    bases = make_bases()
    if args.mem_gib:
        cap = int(args.mem_gib * (1 << 30))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))

    if args.repro is not None:
        blob = base64.b64decode(args.repro)
        allowed = {orig for orig, _ in bases.values()}
        res = check(blob, allowed, limit=args.case_timeout)
        for k, o in res.items():
            val = o.value
            if isinstance(val, bytes):
                val = f"{len(val)} bytes, sha256 {hashlib.sha256(val).hexdigest()[:16]}"
            print(f"{k:10} {o.label:24} {o.failure or val}")
        return 1 if signature(res) else 0

    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    layouts = {name: layout_of(arc) for name, (_, arc) in bases.items()}
    for name, (orig, arc) in bases.items():
        assert _decode(arc, 32, False) == orig, name
    mut = Mutator(bases, layouts, rng)
    st = Stats()
    dog = Watchdog(args.case_timeout)
    dog.start()
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    print(
        f"fuzz: seed {seed}, {args.seconds:g} s, {len(bases)} base archives "
        f"({sum(len(a) for _, a in bases.values())} bytes), case timeout {args.case_timeout:g} s, "
        f"RLIMIT_AS {args.mem_gib:g} GiB",
        flush=True,
    )

    phase1 = 0
    for blob, trace, allowed in systematic(bases, rng):
        if time.monotonic() > deadline:
            break
        run_case(st, dog, blob, trace, allowed, rng.choice([1, 2, 32]), rng.random() < 0.25, args.case_timeout)
        phase1 += 1
    print(f"systematic phase: {phase1} cases in {time.monotonic() - t0:.1f} s", flush=True)
    while time.monotonic() < deadline:
        blob, trace, allowed = mut.random_case()
        run_case(
            st,
            dog,
            blob,
            trace,
            allowed,
            rng.choice([1, 2, 3, 32]),
            rng.random() < 0.25,
            args.case_timeout,
            measure=st.cases % 50 == 0,
        )
    elapsed = time.monotonic() - t0

    print(f"\n{st.cases} cases in {elapsed:.1f} s ({st.cases / elapsed:.0f}/s), seed {seed}")
    for path in PATHS:
        row = sorted(((label, n) for (p, label), n in st.outcomes.items() if p == path), key=lambda x: -x[1])
        print(f"  {path:10} " + ", ".join(f"{label} {n}" for label, n in row))
    print("  mutations: " + ", ".join(f"{k} {n}" for k, n in st.mutations.most_common()))
    peak, size, trace = st.peak_alloc
    print(f"  largest traced allocation peak (1 case in 50): {peak / 2**20:.1f} MiB, {size}-byte input ({trace})")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  max RSS {rss / 1024:.0f} MiB")
    if not st.failures:
        print("no failures")
        return 0
    print(f"\n{len(st.failures)} distinct failure(s):")
    for sig, (blob, trace, res, allowed, batch, pipe) in list(st.failures.items())[:10]:
        small = minimize(blob, allowed, sig, batch, pipe, args.case_timeout)
        print(f"- {sig}\n  mutations: {' '.join(trace)} (batch {batch}, {'pipe' if pipe else 'seekable'})")
        for k, o in res.items():
            if o.failure:
                print(f"  {k}: {o.failure}")
        print(
            f"  minimized to {len(small)} bytes (from {len(blob)}); repro: "
            f"scripts/fuzz.py --repro {base64.b64encode(small).decode()}"
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
