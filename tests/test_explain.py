"""`lmzip explain`: the costs are compression's own, the renderings show them.

Most checks run on a tiny random model (tests/tiny_models.py): its costs must equal
Engine.score's and its payloads the archive's. One test runs the real model on a few
hundred bytes and compares the total with what `lmzip -c` writes.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from script_modules import load_script
from tiny_models import build_tiny_model, training_text

from lmzip.cli import main
from lmzip.coder import RangeEncoder
from lmzip.container import read_info
from lmzip.engine.engine import Engine
from lmzip.engine.loader import load_model
from lmzip.explain import (
    HEAT_LIMITS,
    TOP_GUESSES,
    Explanation,
    explain,
    heat,
    lines,
    render_html,
    render_terminal,
    token_bits,
)
from lmzip.lm_codec import LMCodec
from lmzip.pipeline import CompressOptions, compress_stream

WINDOW = 64  # the CLI's smallest: 100-token chunks slide it
CHUNK = 400
BATCH = 3  # chunks per group: the first group pays for the model record


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: tiny ops on 2 shared cores are far slower with two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Tiny:
    model_dir: Path
    cache: Path
    codec: LMCodec


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    root = tmp_path_factory.mktemp("tiny")
    model_dir = build_tiny_model(root / "llama")
    with pytest.MonkeyPatch.context() as mp:  # only while converting: the default model keeps its cache
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        loaded = load_model(str(model_dir))
    engine = Engine(loaded, window=WINDOW)
    return Tiny(model_dir, root / "cache", LMCodec(engine, batch=BATCH))


def sample() -> bytes:
    """Text chunks the lm wins, a repetitive one zstd wins, one refused, and a short tail."""
    text = training_text(seed=5, sentences=60).encode()
    return text[: 3 * CHUNK] + b"ab" * (CHUNK // 2) + b"\x00\x01\x02" * (CHUNK // 3) + b"\n" + text[-700:]


def archive_records(data: bytes, codec: object, chunk_size: int = CHUNK) -> list[tuple[str, int, int]]:
    """(kind, first chunk, payload bytes) of every data record `lmzip -c` writes."""
    out = io.BytesIO()
    compress_stream(
        io.BytesIO(data), out, CompressOptions(chunk_size=chunk_size, batch=BATCH, codec_factory=lambda o: codec)
    )
    info = read_info(io.BytesIO(out.getvalue()))
    return [(r.kind, r.first_chunk, r.payload_length) for r in info.records if r.kind != "model"]


# ---------------------------------------------------------------- the numbers


def test_costs_are_the_coders_frequencies(tiny: Tiny) -> None:
    data = sample()
    exp = explain(data, tiny.codec, chunk_size=CHUNK)
    engine = tiny.codec.engine
    texts = [c for c in exp.chunks if c.is_text]
    assert len(exp.chunks) == math.ceil(len(data) / CHUNK) and len(texts) == len(exp.chunks) - 1
    scored = engine.score([c.ids for c in texts])
    for c, (cums, freqs) in zip(texts, scored, strict=True):
        assert c.freqs is not None and np.array_equal(c.freqs, freqs)
        assert c.bits == pytest.approx(sum(token_bits(int(f)) for f in freqs))
        enc = RangeEncoder()
        enc.encode_many(cums, freqs)
        assert c.lm_bytes == len(enc.finish())
        assert c.guesses is None  # not asked for


def test_an_input_of_one_group_is_cut_as_the_archive_cuts_it(tiny: Tiny) -> None:
    """Three chunks' worth, the last one short: explain cuts them evenly, as `lmzip -c`
    does (pipeline.cut_input), so its chunks are the archive's."""
    data = sample()[: 2 * CHUNK + CHUNK // 2]
    exp = explain(data, tiny.codec, chunk_size=CHUNK)
    assert [len(c.data) for c in exp.chunks] == [334, 334, 332] and exp.chunk_size == 334
    assert [c.offset for c in exp.chunks] == [0, 334, 668]
    lm = {first: size for kind, first, size in archive_records(data, tiny.codec) if kind == "lm"}
    assert lm and lm == {c.index: c.lm_bytes for c in exp.chunks if c.codec == "lm"}


def test_codecs_and_payloads_equal_the_archive(tiny: Tiny) -> None:
    data = sample()
    exp = explain(data, tiny.codec, chunk_size=CHUNK)
    codecs = [c.codec for c in exp.chunks]
    assert codecs[:3] == ["lm"] * 3 and codecs[3] == "zstd" and not exp.chunks[4].is_text, codecs
    assert codecs[5:] == ["lm", "lm"], codecs
    records = archive_records(data, tiny.codec)
    lm = {first: size for kind, first, size in records if kind == "lm"}
    assert lm == {c.index: c.lm_bytes for c in exp.chunks if c.codec == "lm"}
    assert exp.lm_payload == sum(lm.values())
    # The model's code length is the payload within the coder's final bytes.
    assert abs(exp.lm_bits / 8 - exp.lm_payload) <= 4 * len(lm)
    # The chunk that is not plain text is what the archive made of it: a spans record of
    # that size, or a chunk inside a zstd/stored record; so is every other chunk.
    kinds = {first: kind for kind, first, _ in records}
    sizes = {first: size for kind, first, size in records if kind == "spans"}
    for c in exp.chunks:
        if c.codec in ("lm", "spans"):
            assert kinds[c.index] == c.codec
        else:
            assert c.index not in lm and c.index not in sizes
            assert kinds[max(f for f in kinds if f <= c.index)] in ("zstd", "stored")
    assert {c.index: c.spans_bytes for c in exp.chunks if c.codec == "spans"} == sizes


def test_top_guesses_are_the_rows_highest_frequencies(tiny: Tiny) -> None:
    data = training_text(seed=7, sentences=30).encode()[:CHUNK]
    exp = explain(data, tiny.codec, chunk_size=CHUNK, top=TOP_GUESSES)
    (chunk,) = exp.chunks
    assert chunk.ids is not None and chunk.guesses is not None and chunk.freqs is not None
    rows = tiny.codec.engine.frequencies_for(chunk.ids).numpy()
    assert chunk.guesses.shape == (len(chunk.ids), TOP_GUESSES, 2)
    for i, row in enumerate(rows):
        ids, freqs = chunk.guesses[i, :, 0], chunk.guesses[i, :, 1]
        assert np.array_equal(row[ids], freqs)  # the frequencies compression would use
        assert np.array_equal(freqs, np.sort(row)[::-1][:TOP_GUESSES])  # and the highest ones
        assert row[chunk.ids[i]] == chunk.freqs[i]


def test_empty_input(tiny: Tiny) -> None:
    exp = explain(b"", tiny.codec)
    assert exp.chunks == [] and exp.text_bits == 0 and exp.lm_payload == 0
    assert [ln.text for ln in lines(exp)] == [""]


def test_heat_buckets() -> None:
    assert heat(0.0) == 0 and heat(HEAT_LIMITS[0]) == 1 and heat(100.0) == len(HEAT_LIMITS)
    assert [heat(x) for x in (0.1, 0.7, 1.5, 2.5, 4, 5, 7, 9, 12, 16)] == list(range(10))
    assert token_bits(1 << 24) == 0 and token_bits(1) == 24


# ---------------------------------------------------------------- lines and rendering


def test_lines_spell_the_file_and_sum_to_the_total(tiny: Tiny) -> None:
    data = "naïve café\r\nthe cat said\n\n  dear ☕ white rabbit\n".encode() * 8 + b"\xff tail"
    exp = explain(data, tiny.codec, chunk_size=CHUNK // 4)
    got = lines(exp)
    assert "".join(ln.text for ln in got) == data.decode("utf-8", errors="replace")
    assert sum(ln.bits for ln in got) == pytest.approx(exp.text_bits)
    assert sum(ln.nbytes for ln in got) == len(data)
    assert all(not ln.text[:-1].count("\n") for ln in got)  # a newline only ends a line
    assert [ln.number for ln in got] == list(range(1, len(got) + 1))


def test_terminal_output(tiny: Tiny) -> None:
    data = sample()
    exp = explain(data, tiny.codec, name="sample.txt", chunk_size=CHUNK)
    out = io.StringIO()
    render_terminal(exp, Console(file=out, width=300, color_system=None))
    text = out.getvalue()
    rows = text.splitlines()
    # Each line of the file after its total in bits; the refused chunk as one note line.
    body = [r for r in rows if " │ " in r]
    assert len(body) == len(lines(exp))
    totals = [float(r.split(" │ ", 1)[0]) for r in body]
    others = sum(8 * c.plain_bytes for c in exp.chunks if not c.is_text)
    assert sum(totals) == pytest.approx(exp.text_bits + others, abs=0.05 * len(totals))
    shown = "\n".join(r.split(" │ ", 1)[1] for r in body if "not plain text" not in r)
    assert training_text(seed=5, sentences=60)[:60].split("\n")[0][:40] in shown
    assert re.search(r"\[chunk 4: bytes 1600-1999, not plain text .*: (zstd|stored|spans), \d+ bytes\]", text)
    assert rows[-3].startswith(f"sample.txt: {len(data)} bytes in {len(exp.chunks)} chunk(s) of {CHUNK}")
    assert rows[-2].startswith(f"total {exp.text_bits:.1f} bits") and f"lm payload {exp.lm_payload} bytes" in rows[-2]
    plain = exp.chunks[3].plain_bytes + exp.chunks[4].plain_bytes
    assert rows[-1] == f"2 chunk(s) to zstd/stored: {plain} bytes (1 not plain text)"
    assert "\x1b[" not in text  # no color codes without a terminal


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.tokens: dict[int, list[str]] = {}
        self.line_ids: list[str] = []
        self.scripts: list[str] = []
        self.sources: list[str] = []
        self.in_data = False
        self.data = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and not str(a[key]).startswith("#"):
                self.sources.append(str(a[key]))
        if tag == "link":
            self.sources.append(str(a))
        if a.get("class") == "ln":
            self.line_ids.append(str(a["id"]))
        if tag == "script":
            self.scripts.append(str(a.get("id")))
            self.in_data = a.get("id") == "data"
        self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        self.stack.pop()
        self.in_data = False

    def handle_data(self, data: str) -> None:
        if self.in_data:
            self.data += data
        elif self.stack and self.stack[-1][1].get("data-t") is not None:
            self.tokens.setdefault(int(str(self.stack[-1][1]["data-t"])), []).append(data)


def parse_page(exp: Explanation) -> tuple[str, PageParser]:
    page = render_html(exp)
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return page, parser


def test_html_page(tiny: Tiny) -> None:
    data = sample()
    exp = explain(data, tiny.codec, name="sample <1>.txt", chunk_size=CHUNK, top=TOP_GUESSES)
    page, p = parse_page(exp)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not p.sources and "http" not in page.replace("http-equiv", "")  # self-contained
    assert p.scripts == ["None", "data", "None"]  # the error hook, the data, the page's script
    assert "sample &lt;1&gt;.txt" in page  # names are escaped
    assert p.line_ids == [f"L{ln.number}" for ln in lines(exp)]
    data_json = json.loads(p.data)
    assert len(data_json["tokens"]) == exp.tokens == len(p.tokens)
    # Each token's entry: bits, its piece, its chunk, then TOP_GUESSES (piece, frequency) pairs.
    texts = [c for c in exp.chunks if c.is_text]
    first = data_json["tokens"][0]
    c0 = texts[0]
    assert c0.freqs is not None and c0.guesses is not None and c0.ids is not None
    assert first[0] == pytest.approx(token_bits(int(c0.freqs[0])), abs=0.01)
    assert len(first) == 3 + 2 * TOP_GUESSES and first[4::2] == c0.guesses[0, :, 1].tolist()
    assert data_json["pieces"][first[1]] == exp.pieces[c0.ids[0]].decode().replace(" ", "␣")
    # The spans spell the text (newlines shown as ↵) in token order.
    shown = "".join("".join(p.tokens[t]) for t in sorted(p.tokens))
    want = "".join(ln.text for ln in lines(exp) if not ln.note).replace("\r\n", "↵").replace("\n", "↵")
    assert shown == want
    for heading in ("Costliest lines", "Least predictable lines", "Most predictable lines", "Costliest tokens"):
        assert heading in page
    assert page.count('href="#L') >= 3 * min(10, len(lines(exp)) - 1)
    assert "not text" in page and "</script>" not in p.data


def test_html_without_guesses_says_so(tiny: Tiny) -> None:
    exp = explain(b"the cat said dear", tiny.codec)
    page, p = parse_page(exp)
    assert "(top guesses not computed)" in page
    assert all(len(t) == 3 for t in json.loads(p.data)["tokens"])


def test_script_end_tag_in_text_stays_inside_the_data(tiny: Tiny) -> None:
    exp = explain(b"</script><script>alert(1)</script> the cat", tiny.codec, top=2)
    page, p = parse_page(exp)
    assert p.scripts == ["None", "data", "None"]
    assert "<script>alert" not in page


# ---------------------------------------------------------------- the command


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_cli_terminal_and_html(tiny: Tiny, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny.cache))
    src = tmp_path / "notes.txt"
    src.write_bytes(training_text(seed=9, sentences=12).encode())
    model = ["--model", str(tiny.model_dir), "--threads", "1", "--window", str(WINDOW)]
    code, out, err = run_cli(["explain", *model, str(src)], capsys)
    assert code == 0 and err == ""
    rows = out.splitlines()
    head = [i for i, r in enumerate(rows) if r.startswith(f"{src}: {src.stat().st_size} bytes in 1 chunk(s)")]
    assert len(head) == 1 and rows[head[0] + 1].startswith("total ") and len(rows) - head[0] in (2, 3)
    assert " │ " in out.splitlines()[0]
    page = tmp_path / "out.html"
    page.write_text("old")  # a report is replaced, like any output of a tool that writes one
    code, out, err = run_cli(["explain", *model, "--html", str(page), str(src)], capsys)
    assert code == 0 and err == "" and out.rstrip().endswith(f"wrote {page}")
    assert page.read_text().startswith("<!DOCTYPE html>") and "notes.txt" in page.read_text()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["notes.txt", "out.html"]  # no temporary file left


def test_cli_errors(tiny: Tiny, tmp_path, capsys) -> None:
    code, out, err = run_cli(["explain", str(tmp_path / "missing.txt")], capsys)
    assert code == 1 and out == "" and err.strip() == f"lmzip: {tmp_path / 'missing.txt'}: No such file or directory"
    code, _, err = run_cli(["explain", "--chunk-size", "0", "x"], capsys)
    assert code == 1 and "size must be positive" in err
    code, _, err = run_cli(["explain", "--html", str(tmp_path), str(tmp_path)], capsys)
    assert code == 1 and "Traceback" not in err


# ---------------------------------------------------------------- the real model


@pytest.mark.requires_model
def test_real_model_total_matches_the_archive() -> None:
    """A few hundred bytes of prose and a chunk of binary: explain's total is what
    `lmzip -c` writes as lm payload, within the coder's final bytes."""
    import torch

    from lmzip.lm_codec import load_lm_codec

    threads = torch.get_num_threads()
    try:
        codec = load_lm_codec(threads=1, batch=32)
        prose = (
            b"Alice was beginning to get very tired of sitting by her sister on the bank, and of having "
            b"nothing to do: once or twice she had peeped into the book her sister was reading, but it "
            b"had no pictures or conversations in it, 'and what is the use of a book,' thought Alice "
            b"'without pictures or conversations?'\n"
        )
        binary = bytes(range(256)) * 2  # control bytes the real tokenizer refuses
        text = (prose * 2)[:512]
        data = text + binary + text  # three whole chunks: an even cut leaves them as they are
        chunk = 512
        exp = explain(data, codec, name="mixed", chunk_size=chunk, top=TOP_GUESSES)
        kinds = [c.codec for c in exp.chunks]
        records = archive_records(data, codec, chunk_size=chunk)
    finally:
        torch.set_num_threads(threads)
    lm = {first: size for kind, first, size in records if kind == "lm"}
    assert lm and lm == {c.index: c.lm_bytes for c in exp.chunks if c.codec == "lm"}, (kinds, records)
    assert abs(exp.lm_bits / 8 - sum(lm.values())) <= 4 * len(lm)
    assert kinds[0] == kinds[2] == "lm" and not exp.chunks[1].is_text, kinds
    assert exp.lm_bits / 8 < 0.3 * (512 + 512)  # the model does compress prose


# ---------------------------------------------------------------- in a real browser


def test_page_in_headless_browser(tiny: Tiny, tmp_path) -> None:
    """scripts/explain_browser_check.py on a tiny-model page: renders, no console errors,
    the tooltip opens on hover; and a page with a script error is caught."""
    check = load_script("explain_browser_check")
    browser = check.find_browser()
    if browser is None:
        pytest.skip("no headless chromium (Debian: apt-get install chromium)")
    page = tmp_path / "page.html"
    exp = explain(training_text(seed=2, sentences=40).encode(), tiny.codec, name="t.txt", top=TOP_GUESSES)
    page.write_text(render_html(exp), encoding="utf-8")
    shot = tmp_path / "shot.png"
    assert check.check_page(browser, page, shot, 900, 700) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = tmp_path / "broken.html"
    broken.write_text(render_html(exp).replace("var D=JSON.parse", "var D=JSON.parsee"), encoding="utf-8")
    failures = check.check_page(browser, broken, None, 900, 700)
    assert any("did not run" in f for f in failures) and any("JSON.parsee" in f for f in failures), failures
