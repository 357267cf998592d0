"""Spans records (format v3, kind 4): segmentation, payload layout, escapes, round trips.

The fast tests use the fake LM (tests/fake_lm.py: 0xFF plays the byte without a token)
and a tiny random Llama (tests/tiny_models.py) whose tokenizer is told that a few byte
values have no single-byte token, so the real LM codec codes escapes; one test runs the
default model on a few hundred bytes.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from fake_lm import FakeLM, factory, text
from fake_pipe import Pipe

from lmzip import spans
from lmzip.container import ArchiveWriter, Codec, Header
from lmzip.errors import CorruptChunkError, LmzipError
from lmzip.pipeline import CompressOptions, DecompressOptions, _identity, compress_stream, decompress_stream
from lmzip.pipeline import read_archive_info as info_of
from lmzip.spans import BINARY, RUN, TEXT, Span

RNG = random.Random(12)


def compress(data: bytes, codec=None, pipe: bool = False, **kw) -> bytes:
    out = io.BytesIO()
    src = Pipe(data) if pipe else io.BytesIO(data)
    compress_stream(src, out, CompressOptions(codec_factory=factory(codec or FakeLM()), **kw))
    return out.getvalue()


def decompress(archive: bytes, codec=None, pipe: bool = False, **kw) -> bytes:
    out = io.BytesIO()
    src = Pipe(archive) if pipe else io.BytesIO(archive)
    decompress_stream(src, out, DecompressOptions(codec_factory=factory(codec or FakeLM()), **kw))
    return out.getvalue()


def make_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar (like `tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name in sorted(files):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(files[name]), 0, 0o644
            tf.addfile(ti, io.BytesIO(files[name]))
    return buf.getvalue()


def forced_archive(chunks: list[tuple[bytes, list[Span]]], codec, chunk_size: int) -> bytes:
    """An archive whose every chunk is a spans record with the given spans (the writer's
    choice bypassed), so each span layout is exercised whether or not it would win."""
    out = io.BytesIO()
    w = ArchiveWriter(out, Header(chunk_size=chunk_size))
    w.add_model(_identity(codec))
    crc = 0
    for data, plan in chunks:
        assert sum(s.length for s in plan) == len(data)
        text_part, binary = spans.split(data, plan)
        coded, tokens, escapes = codec.encode_texts([text_part])[0] if text_part else (b"", 0, 0)
        side = zstd_or_stored(binary)
        w.add(Codec.SPANS, data, spans.pack_payload(plan, escapes, coded, side), tokens)
        crc = zlib.crc32(data, crc)
    w.close(crc)
    return out.getvalue()


def zstd_or_stored(binary: bytes) -> bytes:
    from lmzip.codecs import encode_plain

    return encode_plain(binary).payload if binary else b""


# ---------------------------------------------------------------- segmentation


def kinds(data: bytes) -> list[tuple[int, int]]:
    return [(s.kind, s.length) for s in spans.segment(data)]


def test_segment_rules() -> None:
    words = text(300, 1)
    assert kinds(words) == [(TEXT, 300)]
    assert kinds(words + bytes(16) + words) == [(TEXT, 300), (RUN, 16), (TEXT, 300)]
    assert kinds(words + bytes(15) + words) == [(TEXT, 615)]  # short NUL runs stay text
    assert kinds(words + b"=" * 1023 + words) == [(TEXT, 1623)]  # rulers: the model codes them
    assert kinds(words + b"=" * 1024 + words) == [(TEXT, 300), (RUN, 1024), (TEXT, 300)]
    assert kinds(bytes(40)) == [(RUN, 40)]  # a chunk that is one run
    rnd = RNG.randbytes(640)
    assert kinds(words + rnd + words)[1][0] == BINARY
    assert kinds(rnd) == [(BINARY, 640)]
    stray = words[:100] + b"\xff\x04" + words[100:]  # stray bytes inside text stay text
    assert kinds(stray) == [(TEXT, 302)]
    assert [s.value for s in spans.segment(b"ab" + b"\xfe" * 2000)] == [0, 0xFE]


def test_segment_split_join_inverse() -> None:
    for seed in range(40):
        rng = random.Random(seed)
        parts = [text(rng.randrange(1, 300), seed), rng.randbytes(rng.randrange(1, 300)), bytes(rng.randrange(1, 60))]
        data = b"".join(rng.choice(parts) for _ in range(rng.randrange(1, 8)))
        plan = spans.segment(data)
        assert sum(s.length for s in plan) == len(data) and all(s.length >= 1 for s in plan)
        t, b = spans.split(data, plan)
        assert spans.join(plan, t, b) == data


def test_tar_headers_are_text_and_runs() -> None:
    tar = make_tar({"a.txt": text(700, 2), "b/c.py": b"print('hi')\n"})
    plan = spans.segment(tar)
    assert {s.kind for s in plan} == {TEXT, RUN}
    assert sum(s.length for s in plan if s.kind == RUN) > len(tar) // 2  # padding and end-of-archive zeros


# ---------------------------------------------------------------- payload layout


def test_payload_round_trip_and_sizes() -> None:
    plan = [Span(TEXT, 5), Span(RUN, 300, 0), Span(BINARY, 1), Span(RUN, 1, 7), Span(TEXT, 1)]
    table = spans.pack_table(plan)
    assert table == bytes([5, 4 << 2 | TEXT, (299 << 2 | RUN) & 0x7F | 0x80, 299 >> 5, 0, BINARY, RUN, 7, TEXT])
    payload = spans.pack_payload(plan, 2, b"coded", b"Z")
    sp = spans.parse_payload(payload, 308, 3)
    assert (sp.spans, sp.escapes, sp.coded, sp.side, sp.head) == (plan, 2, b"coded", b"Z", len(table) + 2)
    assert sp.side_stored and sp.text_length == 6 and sp.binary_length == 1


@pytest.mark.parametrize(
    ("payload", "length", "tokens", "message"),
    [
        (b"", 10, 1, "cut short"),
        (b"\x00", 10, 1, "0 spans"),
        (b"\x0b", 10, 1, "11 spans for 10"),
        (b"\x01\x03", 10, 1, "unknown span kind 3"),
        (b"\x01\x24", 10, 1, "hold 10 bytes, record"),  # one TEXT span of 10 bytes declared for 9
        (b"\x01\x28", 10, 1, "more than 10"),
        (b"\x01\x25", 10, 0, "cut short in span table"),  # a RUN without its byte
        (b"\x01\x24\x0a\x00", 10, 1, "1 tokens and 10 escapes in 10"),
        (b"\x01\x24\x00\x05ab", 10, 1, "coder bytes cut short"),
        (b"\x01\x24\x00\x00", 10, 0, "text spans without tokens"),
        (b"\x01\x24\x00\x00x", 10, 3, "side stream without binary"),
        (b"\x01\xa4\x00", 10, 1, "overlong varint"),
        (b"\x01" + b"\xff" * 10, 10, 1, "varint too large"),
    ],
)
def test_payload_errors(payload: bytes, length: int, tokens: int, message: str) -> None:
    with pytest.raises(CorruptChunkError, match=message):
        spans.parse_payload(payload, length if message != "hold 10 bytes, record" else 11, tokens)


def test_payload_parser_never_crashes() -> None:
    plan = [Span(TEXT, 50), Span(RUN, 30, 0), Span(BINARY, 20)]
    good = spans.pack_payload(plan, 1, b"\x12\x34" * 5, b"b" * 20)
    for seed in range(2000):
        rng = random.Random(seed)
        bad = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            if op == 0 and bad:
                bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
            elif op == 1 and bad:
                del bad[rng.randrange(len(bad)) :]
            else:
                bad.insert(rng.randrange(len(bad) + 1), rng.randrange(256))
        try:
            sp = spans.parse_payload(bytes(bad), 100, rng.randrange(0, 60))
        except CorruptChunkError:
            continue
        assert sum(s.length for s in sp.spans) == 100


# ---------------------------------------------------------------- escape positions


def test_escape_points_inverse() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        pieces = [rng.randbytes(rng.randrange(1, 5)) for _ in range(rng.randrange(0, 6))]
        clean = b"".join(pieces)
        escapes = sorted((rng.randrange(len(clean) + 1), 0xF0 + rng.randrange(16)) for _ in range(rng.randrange(0, 6)))
        escapes.sort(key=lambda e: e[0])
        points = spans.escapes_by_point(escapes, [len(p) for p in pieces])
        assert len(points) == len(pieces) + 1 and sum(map(len, points)) == len(escapes)
        expected = bytearray()
        at = 0
        for pos, v in escapes:
            expected += clean[at:pos] + bytes([v])
            at = pos
        expected += clean[at:]
        assert spans.insert_escapes(pieces, points) == bytes(expected)


# ---------------------------------------------------------------- round trips with the fake LM


CASES = {
    "tar": make_tar({"a.txt": text(40000, 3), "dir/b.py": b"x = 1\n" * 40, "z": b""}),
    "text-run-text": text(300, 1) + bytes(500) + text(200, 2),
    "run-at-start": bytes(100) + text(400, 4),
    "run-at-end": text(400, 5) + b"\x20" * 1300,
    "binary-inside": text(300, 6) + RNG.randbytes(300) + text(300, 7),
    "binary-at-ends": RNG.randbytes(200) + text(600, 8) + RNG.randbytes(100),
    "strays": b"".join(text(200, i) + bytes([0xFF]) for i in range(8)),
    "invalid-utf8-at-edges": b"caf\xc3" + bytes(40) + b"\xa9 " + text(300, 9) + b"\xe2\x82" + b"\x00" * 20 + b"\xac",
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("chunk_size", [256, 1000, 1 << 16])
def test_round_trip_fake_lm(name: str, chunk_size: int) -> None:
    data = CASES[name]
    for pipe in (False, True):
        archive = compress(data, pipe=pipe, chunk_size=chunk_size, batch=3)
        assert decompress(archive, pipe=pipe, batch=2) == data
        assert decompress(archive, batch=1) == data


def test_tar_takes_spans_records() -> None:
    data = CASES["tar"]
    archive = compress(data, chunk_size=1 << 16)
    info = info_of(io.BytesIO(archive))
    assert info.codec_counts["spans"] == 1
    assert info.span_bytes["run"] > 10_000 and info.span_bytes["binary"] == 0
    assert sum(info.coder_bytes.values()) == len(archive)
    assert info.coder_bytes["model"] > 0 and info.coder_bytes["span_tables"] > 0
    piped = info_of(Pipe(archive))  # info on a pipe reads every record: the same figures
    assert (piped.coder_bytes, piped.span_bytes) == (info.coder_bytes, info.span_bytes)
    # smaller than zstd alone, and than the same archive without spans records
    no_spans = FakeLM()
    no_spans.encode_texts = None  # type: ignore[assignment,method-assign]
    assert len(archive) < len(compress(data, no_spans, chunk_size=1 << 16))


EDGE_LAYOUTS: dict[str, tuple[bytes, list[Span]]] = {
    "one-byte-spans": (
        b"aXbc\x00",
        [Span(TEXT, 1), Span(BINARY, 1), Span(TEXT, 1), Span(RUN, 1, ord("c")), Span(RUN, 1, 0)],
    ),
    "all-runs": (b"\x00" * 30 + b"\xff" * 20, [Span(RUN, 30, 0), Span(RUN, 20, 0xFF)]),
    "all-escapes": (b"\xff" * 7, [Span(TEXT, 7)]),
    "all-binary": (bytes(range(256)), [Span(BINARY, 256)]),
    "text-only": (b"the cat sat ", [Span(TEXT, 12)]),
    "split-utf8": (b"caf\xc3\xa9!", [Span(TEXT, 4), Span(BINARY, 1), Span(TEXT, 1)]),
    "escape-edges": (b"\xffthe \xff\xffcat\xff", [Span(TEXT, 5), Span(RUN, 2, 0xFF), Span(TEXT, 4)]),
}


@pytest.mark.parametrize("name", list(EDGE_LAYOUTS))
def test_forced_layouts_round_trip(name: str) -> None:
    data, plan = EDGE_LAYOUTS[name]
    lm = FakeLM()
    archive = forced_archive([(data, plan), (data, plan)], lm, chunk_size=len(data))
    assert decompress(archive) == data * 2
    assert decompress(archive, pipe=True, batch=1) == data * 2
    assert info_of(io.BytesIO(archive)).codec_counts["spans"] == 2


def test_spans_record_refused_in_a_version_2_archive() -> None:
    data, plan = EDGE_LAYOUTS["text-only"]
    archive = bytearray(forced_archive([(data, plan)], FakeLM(), chunk_size=100))
    archive[4] = 2
    archive[7:11] = zlib.crc32(archive[:7]).to_bytes(4, "little")  # header: magic, version, flags, chunk size 100
    with pytest.raises(LmzipError, match="unknown record kind 4 in a version 2 archive"):
        decompress(bytes(archive))


# ---------------------------------------------------------------- the real LM codec on a tiny model


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    """The real LMCodec on a tiny random Llama whose tokenizer has no single-byte token
    for 0x04, 0xC0 and 0xF5-0xFF (like the default vocabulary's 21 values)."""
    torch = pytest.importorskip("torch")
    from tiny_models import build_tiny_model

    from lmzip.engine.engine import Engine
    from lmzip.engine.loader import load_model
    from lmzip.lm_codec import LMCodec

    root = tmp_path_factory.mktemp("tiny_spans")
    model_dir = build_tiny_model(root / "llama", seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        loaded = load_model(str(model_dir))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = Engine(loaded, window=32)
    for b in [0x04, 0xC0, *range(0xF5, 0x100)]:
        engine.tokenizer.byte_token[b] = -1
    yield lambda batch=4: LMCodec(engine, batch)
    torch.set_num_threads(before)


TEXTS = [
    b"the queen said",
    b"\x04the queen said\xff",  # escapes at both ends
    b"the \xff\xfe\xfdqueen",  # several at one boundary
    b"qu\x04een alice\xc0",  # inside a token
    b"\xff\x04\xf9",  # nothing but escapes: no token at all
    b"\x04",
    b"x",
    b"caf\xc3\xa9 \xc3\xff\xa9 said",  # an escape inside a UTF-8 sequence
]


def test_escapes_round_trip_in_lock_step(tiny_codec) -> None:
    codec = tiny_codec()
    items = codec.encode_texts(TEXTS)
    assert [e for _, _, e in items] == [0, 2, 3, 2, 3, 1, 0, 1]
    assert items[4][1] == 0 and items[5][1] == 0  # no tokens: escapes only
    assert items[0][:2] == codec.encode_chunks([TEXTS[0]])[0]  # no escapes: the lm record's payload
    assert codec.encode_chunks([TEXTS[1]]) == [None]
    for batch in (1, 2, 3, 8):
        assert tiny_codec(batch).decode_texts(items) == TEXTS
    assert tiny_codec(2).decode_texts(items[::-1]) == TEXTS[::-1]
    # plain lm items and escaped texts share one lock-step batch
    mixed = [(items[0][0], items[0][1], 0), items[1], items[3]]
    assert tiny_codec(2).decode_texts(mixed) == [TEXTS[0], TEXTS[1], TEXTS[3]]


def test_escape_cost_is_small(tiny_codec) -> None:
    codec = tiny_codec()
    base = b"the queen said alice was curious " * 30
    stray = bytearray(base)
    for k in range(5):
        stray.insert(150 * k + 7, 0xFF)
    (p0, _, _), (p1, t1, e1) = codec.encode_texts([base, bytes(stray)])
    assert e1 == 5
    assert len(p1) - len(p0) <= 5 * 3  # a few bytes per escape on a 1 KB text


SMALL_TAR = make_tar({"a.txt": text(1500, 3), "dir/b.py": b"x = 1\n" * 40, "z": b""})


@pytest.mark.parametrize("name", ["tar", "invalid-utf8-at-edges", "strays", "binary-inside"])
def test_round_trip_tiny_model(tiny_codec, name: str) -> None:
    data = (SMALL_TAR if name == "tar" else CASES[name]) + b"\x04\xc0 tail"
    archives = set()
    for batch in (1, 3):
        codec = tiny_codec(batch)
        archive = compress(data, codec, chunk_size=512, batch=3)
        assert decompress(archive, tiny_codec(2), pipe=True, batch=2) == data
        archives.add(archive)
        info = info_of(io.BytesIO(archive))
        assert sum(info.coder_bytes.values()) == len(archive)
    assert len(archives) == 1  # the same bytes for any number of lock-step slots
    # every chunk as a spans record, whether or not it wins: the real codec decodes them
    chunks = [data[i : i + 512] for i in range(0, len(data), 512)]
    forced = forced_archive([(c, spans.segment(c)) for c in chunks], tiny_codec(), chunk_size=512)
    assert forced == forced_archive([(c, spans.segment(c)) for c in chunks], tiny_codec(1), chunk_size=512)
    assert info_of(io.BytesIO(forced)).codec_counts["spans"] == len(chunks)
    assert decompress(forced, tiny_codec(3), batch=3) == data
    assert decompress(forced, tiny_codec(1), pipe=True, batch=1) == data


def test_corrupt_spans_payload_is_a_clean_error(tiny_codec) -> None:
    data = text(200, 1) + bytes(100) + text(200, 2) + b"\xff"
    codec = tiny_codec()
    archive = forced_archive([(data, spans.segment(data))], codec, chunk_size=1 << 16)
    assert decompress(archive, codec) == data
    for seed in range(30):
        rng = random.Random(seed)
        bad = bytearray(archive)
        at = rng.randrange(100, len(archive) - 30)
        bad[at] ^= 1 << rng.randrange(8)
        try:
            out = decompress(bytes(bad), codec)
        except LmzipError:
            continue
        assert out == data


# ---------------------------------------------------------------- the default model, end to end


@pytest.mark.requires_model
def test_cli_round_trip_default_model(tmp_path: Path) -> None:
    prose = (Path(__file__).parent / "golden" / "archives" / "prose.txt").read_bytes()[:600]
    data = make_tar({"n.txt": prose[:300] + b"\x04" + prose[300:]})  # the model must pay for its identity record
    (tmp_path / "t.tar").write_bytes(data)
    run = [sys.executable, "-m", "lmzip.cli", "--threads", "1"]
    p = subprocess.run([*run, "-c", "t.tar"], cwd=tmp_path, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    archive = p.stdout
    info = info_of(io.BytesIO(archive))
    assert info.codec_counts["spans"] == 1 and info.span_bytes["run"] > 1000
    piped = subprocess.run([*run, "-c"], input=data, cwd=tmp_path, capture_output=True, timeout=600)
    assert piped.stdout == archive
    back = subprocess.run([*run, "-dc"], input=archive, cwd=tmp_path, capture_output=True, timeout=600)
    assert back.returncode == 0 and back.stdout == data


# ---------------------------------------------------------------- container rules for kind 4


def test_container_rules_for_spans_records() -> None:
    from lmzip.container import FormatError

    w = ArchiveWriter(io.BytesIO(), Header(chunk_size=100))
    with pytest.raises(FormatError, match="spans record before the model identity record"):
        w.add(Codec.SPANS, b"x" * 10, b"p", 0)
    w.add_model(_identity(FakeLM()))
    w.add(Codec.SPANS, b"x" * 100, b"p", 0)  # T = 0 is valid for spans (not for lm)
    with pytest.raises(FormatError, match="fields out of range"):
        w.add(Codec.LM, b"x" * 10, b"p", 0)
    with pytest.raises(FormatError, match="fields out of range"):
        w.add(Codec.SPANS, b"x" * 10, b"p", 11)
    with pytest.raises(FormatError, match="outside 1..100"):
        w.add(Codec.SPANS, b"x" * 101, b"p", 1)  # one chunk at most
    with pytest.raises(ValueError, match="cannot write format version 6"):
        Header(chunk_size=100, version=6).pack()
