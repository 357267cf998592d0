"""`lmzip explain`: where the bits of a file go.

The file is cut into chunks exactly as compression cuts it, and every text chunk is
scored with the same integer frequencies the range coder consumes: a token coded with
frequency f (out of 2**24) costs 24 - log2(f) bits. Each chunk's tokens are also range
coded, so the report knows each lm payload to the byte and which codec compression
picks for each chunk. The total is therefore the archive's lm payload within the
coder's final bytes (tests/test_explain.py checks it against the archive).

Top guesses (for the HTML page) come from the same logits: the highest-scoring tokens,
with their exact frequencies. Work is bounded like compression's: one chunk at a time,
`engine.segment` positions per extend and LOGIT_ROWS vocabulary-wide rows at a time.

Rendering: `render_terminal` prints the text colored by bits per token with per-line
totals (rich); `render_html` returns one self-contained page (inline CSS and JS).
"""

from __future__ import annotations

import codecs
import html
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmzip import defaults
from lmzip.codecs import encode_plain
from lmzip.coder import RangeEncoder
from lmzip.engine.numerics import FREQ_BITS

if TYPE_CHECKING:
    from rich.console import Console

    from lmzip.lm_codec import LMCodec

TOP_GUESSES = 5
TOP_CANDIDATES = 8  # highest logits examined to find the TOP_GUESSES highest frequencies
# Upper bounds (bits per token) of the heat buckets; the last bucket is open-ended.
HEAT_LIMITS = (0.5, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0, 11.0, 15.0)
HEAT_COLORS = (
    "#e8f5e9",
    "#c8e6c9",
    "#fff9c4",
    "#ffecb3",
    "#ffe0b2",
    "#ffcc80",
    "#ffab91",
    "#ff8a65",
    "#f4511e",
    "#c62828",
)

DARK = 8  # buckets from here on get white text


def token_bits(freq: int) -> float:
    """What the range coder spends on a token of frequency `freq` out of 2**FREQ_BITS."""
    return FREQ_BITS - math.log2(freq)


def heat(bits: float) -> int:
    """The heat bucket (0..len(HEAT_LIMITS)) of a token cost."""
    for i, limit in enumerate(HEAT_LIMITS):
        if bits < limit:
            return i
    return len(HEAT_LIMITS)


# ---------------------------------------------------------------- the analysis


@dataclass
class ChunkReport:
    """One chunk as compression sees it.

    `ids`/`freqs`: its tokens and their coder frequencies (None when the tokenizer
    chunk is not plain text: binary spans, runs or escapes, which compression codes as a
    spans record or stores/zstd-compresses; explain shows such chunks whole).
    `guesses`: [tokens, top, 2] int32 (token id, frequency) when asked for.
    """

    index: int
    offset: int
    data: bytes
    plain_codec: str  # "zstd", "lzma" or "stored": the best other codec for this chunk alone
    plain_bytes: int
    ids: list[int] | None = None
    freqs: np.ndarray | None = None
    guesses: np.ndarray | None = None
    lm_bytes: int | None = None  # the range coder's payload for the chunk
    spans_bytes: int | None = None  # the spans record's payload, for a chunk that is not plain text
    codec: str = ""  # what compression writes for it: "lm", "spans", "zstd", "lzma" or "stored"

    @property
    def is_text(self) -> bool:
        return self.ids is not None

    @property
    def bits(self) -> float:
        """The model's code length for the chunk, in bits (0 for a chunk that is not text)."""
        if self.freqs is None or not len(self.freqs):
            return 0.0
        return float(np.sum(FREQ_BITS - np.log2(self.freqs.astype(np.float64))))


@dataclass
class Explanation:
    name: str
    size: int
    model: str
    window: int
    chunk_size: int
    chunks: list[ChunkReport]
    pieces: list[bytes]  # token id -> its bytes (the tokenizer's table)

    @property
    def tokens(self) -> int:
        return sum(len(c.ids) for c in self.chunks if c.ids is not None)

    @property
    def lm_chunks(self) -> list[ChunkReport]:
        return [c for c in self.chunks if c.codec == "lm"]

    @property
    def text_bits(self) -> float:
        """The model's code length of every text chunk."""
        return sum(c.bits for c in self.chunks)

    @property
    def lm_bits(self) -> float:
        """The model's code length of the chunks compression gives the lm codec."""
        return sum(c.bits for c in self.lm_chunks)

    @property
    def lm_payload(self) -> int:
        return sum(c.lm_bytes or 0 for c in self.lm_chunks)


def _score_chunk(engine: Any, ids: list[int], top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(cum, freq) of every token, as Engine.score computes them, and the top guesses.

    The same calls as Engine._score_batch for a batch of one sequence: [BOS] + ids[:-1]
    extended `engine.segment` positions at a time through one cache, the coder's
    intervals from LOGIT_ROWS rows of logits at a time (rows do not depend on the batch).
    """
    import torch

    from lmzip.engine.engine import LOGIT_ROWS
    from lmzip.engine.frequencies import frequencies

    model, device = engine.model, engine.device
    n = len(ids)
    cums = np.zeros(n, dtype=np.int64)
    freqs = np.zeros(n, dtype=np.int64)
    guesses = np.zeros((n, top, 2), dtype=np.int32) if top else None  # ids < vocab, freqs <= 2**24
    inputs = torch.tensor([[engine.bos] + ids[:-1]], dtype=torch.long, device=device)
    targets = torch.tensor(ids, dtype=torch.long, device=device)
    with torch.inference_mode():
        cache = model.empty_cache(1)
        for start in range(0, n, engine.segment):
            hidden = model.extend(inputs[:, start : start + engine.segment], start, cache)[0]
            for lo in range(0, hidden.shape[0], LOGIT_ROWS):
                p = start + lo
                logits = model.logits(hidden[lo : lo + LOGIT_ROWS])
                rows = logits.shape[0]
                cum, picked = model.bounds(logits, targets[p : p + rows])
                cums[p : p + rows] = cum.cpu().numpy()
                freqs[p : p + rows] = picked.cpu().numpy()
                if guesses is not None:
                    guesses[p : p + rows] = _top_guesses(frequencies(logits), logits, top)
    return cums, freqs, guesses


def _top_guesses(table: Any, logits: Any, top: int) -> np.ndarray:
    """[rows, top, 2]: the `top` tokens of highest frequency (ids, frequencies) per row.

    A frequency grows with its logit up to rounding (tokens whose exp2 terms round alike
    may differ by one unit of 2**-24), so the highest frequencies are found among the
    TOP_CANDIDATES highest logits, and their exact frequencies decide the order. Only a
    near-tie with a candidate ranked below TOP_CANDIDATES could be missed, at a difference
    of one unit.
    """
    import torch

    k = min(max(top, TOP_CANDIDATES), logits.shape[1])
    cand = logits.topk(k, dim=-1).indices
    cf = table.cumulative(torch.cat([cand, cand + 1], dim=1))
    f = cf[:, k:] - cf[:, :k]
    order = torch.sort(f, dim=1, descending=True, stable=True).indices[:, :top]
    ids = cand.gather(1, order)
    return torch.stack([ids, f.gather(1, order)], dim=-1).cpu().numpy()


def _payload_bytes(cums: np.ndarray, freqs: np.ndarray) -> int:
    enc = RangeEncoder()
    enc.encode_many(cums, freqs)
    return len(enc.finish())


def _groups(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def explain(
    data: bytes,
    codec: LMCodec,
    name: str = "-",
    chunk_size: int = defaults.CHUNK_SIZE,
    top: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Explanation:
    """Score `data` chunk by chunk as `lmzip -c` would; `top` guesses per token (0: none).

    `progress(n)` is called with the bytes of each chunk once it is scored.
    """
    from lmzip import spans
    from lmzip.container import Codec, Header, model_record_size
    from lmzip.pipeline import _Candidate, _candidates, _choose, _identity, cut_input, group_chunks

    engine = codec.engine
    escapable = getattr(engine.tokenizer, "escapable", None)
    batch = group_chunks(codec.batch, chunk_size)
    pieces, chunk_size = cut_input(data, chunk_size, batch)  # as compress_stream cuts it
    chunks = []
    offset = 0
    for index, piece in enumerate(pieces):
        plain = encode_plain(piece, try_lzma=True)
        chunks.append(ChunkReport(index, offset, piece, plain.codec.name.lower(), len(plain.payload)))
        offset += len(piece)

    def plain_text(piece: bytes) -> bool:
        """A chunk that is one TEXT span without escapes: what an lm record holds."""
        plan = spans.segment(piece)
        if len(plan) != 1 or plan[0].kind != spans.TEXT:
            return False
        return escapable is None or not any(escapable[b] for b in set(piece))

    texts = [c for c in chunks if plain_text(c.data)]
    tokenized = engine.tokenizer.encode_batch([c.data for c in texts]) if texts else []
    for chunk, ids in zip(texts, tokenized, strict=True):
        if ids:
            cums, freqs, guesses = _score_chunk(engine, ids, top)
            chunk.ids, chunk.freqs, chunk.guesses = ids, freqs, guesses
            chunk.lm_bytes = _payload_bytes(cums, freqs)
        if progress:
            progress(len(chunk.data))
    # What each chunk becomes: the pipeline's own choice, group by group (lm, spans or a
    # stored/zstd run; the first group with model records also pays for the model
    # identity record). Chunks that are not plain text are coded as spans once more here.
    model_cost = model_record_size(_identity(codec))  # as compress_stream counts it
    has_model = False
    for group in _groups(chunks, batch):
        cands: list[_Candidate | None] = []
        for c in group:
            if c.ids is not None and c.lm_bytes is not None:
                cands.append(_Candidate(Codec.LM, b"\0" * c.lm_bytes, len(c.ids)))
            elif c.ids is None and not plain_text(c.data):
                (cand,) = _candidates(codec, [c.data])
                cands.append(cand)
                c.spans_bytes = len(cand.payload) if cand is not None else None
                if progress:
                    progress(len(c.data))
            else:
                cands.append(None)
        chosen = _choose([c.data for c in group], cands, 0 if has_model else model_cost, Header(chunk_size))
        for c, cand in zip(group, chosen, strict=True):
            c.codec = cand.codec.name.lower() if cand is not None else c.plain_codec
        has_model = has_model or any(chosen)
    return Explanation(
        name=name,
        size=len(data),
        model=engine.identity.name,
        window=engine.window,
        chunk_size=chunk_size,
        chunks=chunks,
        pieces=engine.tokenizer.id_to_bytes,
    )


# ---------------------------------------------------------------- lines of tokens


@dataclass
class Piece:
    """Part of one token's text on one line (a token whose text holds a newline is cut)."""

    token: int  # the token's number in the file (-1: a chunk that is not text)
    text: str
    bits: float
    first: bool  # the token's first piece (its cost is counted on this line)


@dataclass
class Line:
    number: int  # 1-based
    pieces: list[Piece] = field(default_factory=list)
    bits: float = 0.0
    nbytes: int = 0
    note: str = ""  # set for the placeholder line of a chunk that is not text

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)


_NEWLINES = re.compile("(\r?\n)")


def _chunk_note(c: ChunkReport) -> str:
    return (
        f"[chunk {c.index}: bytes {c.offset}-{c.offset + len(c.data) - 1}, not plain text "
        f"(binary spans, runs or escapes): {c.codec}, "
        f"{c.spans_bytes if c.codec == 'spans' else c.plain_bytes} bytes]"
    )


def lines(exp: Explanation) -> list[Line]:
    """The file's text cut into lines, each with its tokens and their costs.

    A token's text is its bytes decoded incrementally (a character split across tokens
    shows in the token that completes it), so the lines spell the file as UTF-8 with
    replacement characters for invalid bytes. A token's cost is counted on the line
    where it starts. A chunk that is not text becomes one placeholder line.
    """
    out = [Line(1)]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    token = 0
    for c in exp.chunks:
        if c.ids is None:
            decoder.reset()
            if out[-1].pieces or out[-1].note:
                out.append(Line(len(out) + 1))
            out[-1].note = _chunk_note(c)
            out[-1].nbytes = len(c.data)
            out[-1].bits = 8.0 * c.plain_bytes
            out.append(Line(len(out) + 1))
            continue
        assert c.freqs is not None
        for tid, f in zip(c.ids, c.freqs.tolist(), strict=True):
            raw = exp.pieces[tid]
            bits = token_bits(f)
            out[-1].bits += bits
            out[-1].nbytes += len(raw)
            # "a\r\nb" -> "a", "\r\n" (ends the line), "b"; a token that only starts a
            # character ("") stays one empty piece so that it can still be shown.
            parts = [p for p in _NEWLINES.split(decoder.decode(raw)) if p] or [""]
            for i, part in enumerate(parts):
                out[-1].pieces.append(Piece(token, part, bits, i == 0))
                if part.endswith("\n"):
                    out.append(Line(len(out) + 1))
            token += 1
    if not out[-1].pieces and not out[-1].note and len(out) > 1:
        out.pop()
    return out


def summary(exp: Explanation) -> list[str]:
    """The file's total and how it compares with the archive, in two or three lines."""
    text_bytes = sum(len(c.data) for c in exp.chunks if c.is_text)
    bpb = exp.text_bits / text_bytes if text_bytes else 0.0
    others = [c for c in exp.chunks if c.codec != "lm"]
    out = [
        f"{exp.name}: {exp.size} bytes in {len(exp.chunks)} chunk(s) of {exp.chunk_size}; "
        f"model {exp.model}, window {exp.window}",
        f"total {exp.text_bits:.1f} bits = {exp.text_bits / 8:.1f} bytes for {exp.tokens} tokens "
        f"({bpb:.3f} bits/byte of text); lm payload {exp.lm_payload} bytes in {len(exp.lm_chunks)} chunk(s)",
    ]
    spanned = [c for c in others if c.codec == "spans"]
    plain = [c for c in others if c.codec != "spans"]
    if spanned:
        out.append(
            f"{len(spanned)} chunk(s) as spans records (text, runs and binary spans): "
            f"{sum(c.spans_bytes or 0 for c in spanned)} bytes of payload"
        )
    if plain:
        out.append(
            f"{len(plain)} chunk(s) to zstd/stored: {sum(c.plain_bytes for c in plain)} bytes "
            f"({sum(not c.is_text for c in plain)} not plain text)"
        )
    return out


# ---------------------------------------------------------------- terminal


def render_terminal(exp: Explanation, console: Console) -> None:
    """The text colored by bits per token, each line after its total in bits, then the
    file's total. Colors appear only where the console has them (a terminal)."""
    from rich.text import Text

    styles = [f"{'#ffffff' if i >= DARK else '#000000'} on {c}" for i, c in enumerate(HEAT_COLORS)]
    all_lines = lines(exp)
    width = max(6, *(len(f"{ln.bits:.1f}") for ln in all_lines))
    for ln in all_lines:
        row = Text(f"{ln.bits:>{width}.1f} │ ", style="dim")
        if ln.note:
            row.append(ln.note, style="italic")
        for p in ln.pieces:
            if p.text and not p.text.endswith("\n"):
                row.append(p.text.replace("\t", "    ").replace("\r", ""), style=styles[heat(p.bits)])
        console.print(row, soft_wrap=True, highlight=False)  # one row per line, even in a pipe
    legend = Text("bits/token: ", style="dim")
    lows = (0.0, *HEAT_LIMITS)
    for i, style in enumerate(styles):
        legend.append(f" {lows[i]:g}+ ", style=style)
    console.print(legend, highlight=False)
    for line in summary(exp):
        console.print(line, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- HTML


def _show(raw: bytes) -> str:
    """A token's bytes as a short visible label (spaces, newlines and tabs made visible)."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "⇤")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _line_label(ln: Line, limit: int = 70) -> str:
    text = ln.note or ln.text.rstrip("\n")
    text = text.strip() or "(blank)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_html(exp: Explanation, rows: int = 10) -> str:
    """One self-contained page (inline CSS and JS, nothing fetched): tokens heat-colored
    by cost, a tooltip with cost and top guesses per token, and the costliest and
    cheapest lines and tokens."""
    all_lines = lines(exp)
    # The tooltip's data: per token [bits, piece index, then (guess piece index, frequency)...].
    vocab: dict[int, int] = {}
    table: list[str] = []

    def ref(tid: int) -> int:
        if tid not in vocab:
            vocab[tid] = len(table)
            table.append(_show(exp.pieces[tid]))
        return vocab[tid]

    toks: list[list[Any]] = []
    for c in exp.chunks:
        if c.ids is None or c.freqs is None:
            continue
        for i, (tid, f) in enumerate(zip(c.ids, c.freqs.tolist(), strict=True)):
            entry: list[Any] = [round(token_bits(f), 2), ref(tid), c.index]
            if c.guesses is not None:
                for gid, gf in c.guesses[i].tolist():
                    entry += [ref(gid), gf]
            toks.append(entry)

    body: list[str] = []
    for ln in all_lines:
        cells = []
        if ln.note:
            cells.append(f'<span class="note">{_esc(ln.note)}</span>')
        for p in ln.pieces:
            end = p.text.endswith("\n")
            cls = f"h{heat(p.bits)}" + (" nl" if end or p.text == "\r" else " z" if not p.text else "")
            shown = "↵" if end else _esc(p.text.replace("\r", "⇤"))
            cells.append(f'<span class="{cls}" data-t="{p.token}">{shown}</span>')
        body.append(
            f'<div class="ln" id="L{ln.number}"><span class="g">{ln.bits:.1f}</span>'
            f'<span class="x">{"".join(cells)}</span></div>'
        )

    measured = [ln for ln in all_lines if not ln.note and ln.nbytes >= 8]

    def line_rows(chosen: list[Line]) -> str:
        return "".join(
            f'<tr><td><a href="#L{ln.number}">{ln.number}</a></td><td class="n">{ln.bits:.1f}</td>'
            f'<td class="n">{ln.bits / max(1, ln.nbytes):.2f}</td><td class="t">{_esc(_line_label(ln))}</td></tr>'
            for ln in chosen
        )

    costly = sorted(measured, key=lambda ln: -ln.bits)[:rows]
    dense = sorted(measured, key=lambda ln: -ln.bits / ln.nbytes)[:rows]
    cheap = sorted(measured, key=lambda ln: ln.bits / ln.nbytes)[:rows]
    token_line = {}
    for ln in all_lines:
        for p in ln.pieces:
            if p.first:
                token_line[p.token] = ln.number
    worst = sorted(range(len(toks)), key=lambda t: -toks[t][0])[:rows]
    worst_rows = "".join(
        f'<tr><td><a href="#L{token_line.get(t, 1)}">{token_line.get(t, 1)}</a></td><td class="n">{toks[t][0]:.1f}'
        f'</td><td class="t"><code>{_esc(table[toks[t][1]])}</code></td><td class="t">'
        + (f"<code>{_esc(table[toks[t][3]])}</code>" if len(toks[t]) > 3 else "")
        + "</td></tr>"
        for t in worst
    )
    chunk_rows = "".join(
        f'<tr><td>{c.index}</td><td class="n">{c.offset}</td><td class="n">{len(c.data)}</td>'
        f'<td class="n">{len(c.ids) if c.ids is not None else "-"}</td>'
        f'<td class="n">{c.bits:.1f}</td><td class="n">{c.lm_bytes if c.lm_bytes is not None else "-"}</td>'
        f'<td class="n">{c.plain_bytes} ({c.plain_codec})</td><td>{c.codec if c.is_text else c.codec + " (not text)"}'
        "</td></tr>"
        for c in exp.chunks
    )
    lows = (0.0, *HEAT_LIMITS)
    legend = "".join(f'<span class="h{i}">&nbsp;{lows[i]:g}+&nbsp;</span>' for i in range(len(HEAT_COLORS)))
    heat_css = "".join(f".h{i}{{background:{c}}}" for i, c in enumerate(HEAT_COLORS))
    heat_css += ",".join(f".h{i}" for i in range(DARK, len(HEAT_COLORS))) + "{color:#fff}"
    data = json.dumps({"pieces": table, "tokens": toks}, ensure_ascii=True, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # never closes the script element
    total = exp.text_bits
    text_bytes = sum(len(c.data) for c in exp.chunks if c.is_text)
    guesses_note = "" if any(c.guesses is not None for c in exp.chunks) else " (top guesses not computed)"
    return _PAGE.format(
        title=_esc(f"lmzip explain: {exp.name}"),
        name=_esc(exp.name),
        heat_css=heat_css,
        size=exp.size,
        model=_esc(exp.model),
        window=exp.window,
        chunk_size=exp.chunk_size,
        nchunks=len(exp.chunks),
        tokens=exp.tokens,
        total=f"{total:.1f}",
        total_bytes=f"{total / 8:.1f}",
        bpb=f"{total / text_bytes:.3f}" if text_bytes else "-",
        lm_payload=exp.lm_payload,
        lm_chunks=len(exp.lm_chunks),
        legend=legend,
        guesses_note=guesses_note,
        costly=line_rows(costly),
        dense=line_rows(dense),
        cheap=line_rows(cheap),
        worst=worst_rows,
        chunk_rows=chunk_rows,
        lines="\n".join(body),
        data=data,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>window.lmzipErrors=[];window.addEventListener("error",function(e){{window.lmzipErrors.push(String(e.message));
var d=document.getElementById("errors");if(d){{d.textContent=window.lmzipErrors.join("\\n");}}}});</script>
<style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}}
header{{padding:14px 22px 8px;background:#fff;border-bottom:1px solid #ddd}}
h1{{font-size:19px;margin:0 0 6px}} h2{{font-size:15px;margin:18px 0 6px}}
.facts{{color:#444}} .facts b{{color:#000}}
.legend{{margin-top:8px;font:12px ui-monospace,monospace}} .legend span{{padding:1px 0;margin-right:1px}}
main{{display:flex;gap:22px;padding:12px 22px;align-items:flex-start}}
#text{{flex:3;min-width:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 0;
font:13px/1.55 ui-monospace,"DejaVu Sans Mono",Menlo,monospace}}
aside{{flex:2;min-width:300px;max-width:560px}}
.ln{{display:flex}} .ln:target{{outline:2px solid #1565c0}}
.g{{flex:none;width:5.5em;text-align:right;padding-right:10px;margin-right:8px;color:#999;
border-right:1px solid #eee;user-select:none}}
.x{{white-space:pre-wrap;overflow-wrap:anywhere;min-width:0}}
.x span{{border-radius:2px;cursor:default}} .x span:hover,.x span.on{{outline:1px solid #333}}
.nl{{color:#9e9e9e;font-size:10px;padding:0 1px}} .z{{display:inline-block;width:3px;height:1em}}
.note{{font-style:italic;color:#555;background:#eceff1;padding:0 4px}}
{heat_css}
table{{border-collapse:collapse;width:100%;background:#fff;font-size:12.5px;margin-bottom:6px}}
td,th{{border-bottom:1px solid #eee;padding:2px 6px;text-align:left;vertical-align:top}}
th{{color:#555;font-weight:600}} td.n{{text-align:right;font-variant-numeric:tabular-nums}}
td.t{{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}}
#tip{{position:fixed;display:none;z-index:9;background:#263238;color:#eceff1;border-radius:6px;padding:8px 10px;
font:12.5px/1.4 ui-monospace,monospace;box-shadow:0 4px 14px rgba(0,0,0,.3);pointer-events:none;min-width:220px}}
#tip td{{border:0;padding:1px 6px;color:#eceff1}} #tip table{{background:none;margin:4px 0 0;width:auto}}
#tip .hit td{{color:#a5d6a7;font-weight:bold}} #tip .bar{{display:inline-block;height:8px;background:#80cbc4}}
#errors{{white-space:pre;color:#b71c1c}}
</style></head>
<body>
<header>
<h1>{name}</h1>
<div class="facts"><b>{total}</b> bits (<b>{total_bytes}</b> bytes) for {tokens} tokens, <b>{bpb}</b> bits per byte
of text; lm payload {lm_payload} bytes in {lm_chunks} chunk(s) &middot; {size} bytes in {nchunks} chunk(s) of
{chunk_size} &middot; model {model}, window {window}</div>
<div class="legend">bits per token: {legend}</div>
<div id="errors"></div>
</header>
<main>
<div id="text">
{lines}
</div>
<aside>
<h2>Costliest lines (bits)</h2>
<table><tr><th>line</th><th>bits</th><th>bits/B</th><th>text</th></tr>{costly}</table>
<h2>Least predictable lines (bits per byte)</h2>
<table><tr><th>line</th><th>bits</th><th>bits/B</th><th>text</th></tr>{dense}</table>
<h2>Most predictable lines (bits per byte)</h2>
<table><tr><th>line</th><th>bits</th><th>bits/B</th><th>text</th></tr>{cheap}</table>
<h2>Costliest tokens{guesses_note}</h2>
<table><tr><th>line</th><th>bits</th><th>token</th><th>model's first guess</th></tr>{worst}</table>
<h2>Chunks</h2>
<table><tr><th>#</th><th>offset</th><th>bytes</th><th>tokens</th><th>bits</th><th>lm bytes</th><th>zstd/stored</th>
<th>written as</th></tr>{chunk_rows}</table>
</aside>
</main>
<div id="tip"></div>
<script id="data" type="application/json">{data}</script>
<script>
(function(){{
var D=JSON.parse(document.getElementById("data").textContent),P=D.pieces,T=D.tokens;
var tip=document.getElementById("tip"),text=document.getElementById("text"),lit=[];
var ESC={{"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}};
function esc(s){{return s.replace(/[&<>"]/g,function(c){{return ESC[c];}});}}
function pct(f){{var p=f/16777216*100;return p>=10?p.toFixed(1):p>=0.1?p.toFixed(2):p.toExponential(1);}}
function show(el,ev){{
  var t=T[+el.dataset.t];if(!t)return;
  lit.forEach(function(s){{s.classList.remove("on");}});
  lit=Array.prototype.slice.call(text.querySelectorAll('span[data-t="'+el.dataset.t+'"]'));
  lit.forEach(function(s){{s.classList.add("on");}});
  var h="<div><b>"+esc(P[t[1]])+"</b> &nbsp;"+t[0].toFixed(2)+" bits &nbsp;(p = "+pct(Math.pow(2,-t[0])*16777216)+
    "%, chunk "+t[2]+")</div>";
  if(t.length>3){{
    h+="<table>";
    for(var i=3;i+1<t.length;i+=2){{
      var w=Math.max(1,Math.round(60*t[i+1]/16777216));
      h+="<tr"+(t[i]===t[1]?' class="hit"':"")+"><td>"+esc(P[t[i]])+"</td><td style='text-align:right'>"+
        pct(t[i+1])+"%</td><td><span class='bar' style='width:"+w+"px'></span></td></tr>";
    }}
    h+="</table>";
  }}
  tip.innerHTML=h;tip.style.display="block";move(ev);
}}
function move(ev){{
  var x=ev.clientX+14,y=ev.clientY+16,r=tip.getBoundingClientRect();
  if(x+r.width>window.innerWidth-8)x=Math.max(8,ev.clientX-r.width-14);
  if(y+r.height>window.innerHeight-8)y=Math.max(8,ev.clientY-r.height-16);
  tip.style.left=x+"px";tip.style.top=y+"px";
}}
text.addEventListener("mouseover",function(ev){{
  var el=ev.target;if(el.dataset&&el.dataset.t!==undefined)show(el,ev);}});
text.addEventListener("mousemove",function(ev){{if(tip.style.display==="block")move(ev);}});
text.addEventListener("mouseleave",function(){{tip.style.display="none";
  lit.forEach(function(s){{s.classList.remove("on");}});lit=[];}});
document.body.setAttribute("data-rendered",String(T.length));
}})();
</script>
</body></html>
"""


# ---------------------------------------------------------------- the command


def explain_file(
    path: str,
    html_out: str | None = None,
    *,
    model: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch: int = defaults.BATCH,
    chunk_size: int = defaults.CHUNK_SIZE,
    window: int | None = None,
    progress: Callable[[int], None] | None = None,
    console: Console | None = None,
) -> Explanation:
    """`lmzip explain`: read `path` ("-": stdin), score it, and print the colored text,
    or write the HTML page to `html_out` (atomically) and print the summary."""
    import sys

    from rich.console import Console

    from lmzip.container import check_chunk_size
    from lmzip.errors import LmzipError
    from lmzip.fileio import AtomicOutput
    from lmzip.lm_codec import load_lm_codec

    check_chunk_size(chunk_size, LmzipError)
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    codec = load_lm_codec(model=model, device=device, threads=threads, batch=batch, window=window)
    exp = explain(data, codec, name=path, chunk_size=chunk_size, top=TOP_GUESSES if html_out else 0, progress=progress)
    console = console or Console(highlight=False)
    if html_out:
        page = render_html(exp).encode("utf-8")
        with AtomicOutput(html_out, overwrite=True) as out:
            out.write(page)
        for line in [*summary(exp), f"wrote {html_out}"]:
            console.print(line, highlight=False, soft_wrap=True)
    else:
        render_terminal(exp, console)
    return exp
