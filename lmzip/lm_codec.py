"""The LM codec: chunk bytes -> tokens -> engine frequencies -> range-coded payload, and back.

Compression scores whole chunks at once (prefill); decompression advances every chunk
of a group by one token per engine step, each with its own range decoder. Texts of
spans records (format v3) may hold bytes without a single-byte token: escapes, coded
between the tokens in the same stream (lmzip/spans.py, EscapeCoder) and decoded per
slot between engine steps, so lm and spans records share one lock-step batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmzip import defaults
from lmzip.coder import RangeDecoder, RangeEncoder
from lmzip.container import ModelInfo
from lmzip.engine.engine import Engine
from lmzip.engine.loader import ModelIdentity, load_model
from lmzip.engine.numerics import NUMERICS_VERSION
from lmzip.errors import CorruptChunkError, LmzipError
from lmzip.spans import EscapeCoder, escapes_by_point, insert_escapes, strip_escapes
from lmzip.threads import choose_threads


@dataclass
class LMCodec:
    engine: Engine
    batch: int
    threads: int | None = None  # set in every thread that calls the codec (OpenMP counts are per thread)

    def _set_threads(self) -> None:
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    @property
    def identity(self) -> ModelIdentity:
        return self.engine.identity

    @property
    def numerics_version(self) -> int:
        return NUMERICS_VERSION

    @property
    def context_window(self) -> int:
        return self.engine.window

    def encode_chunks(self, chunks: list[bytes]) -> list[tuple[bytes, int] | None]:
        """(payload, token count) of an lm record per chunk; None when the chunk needs escapes."""
        out: list[tuple[bytes, int] | None] = []
        escapable = self.engine.tokenizer.escapable
        plain = [not any(escapable[b] for b in set(c)) for c in chunks]
        coded = iter(self.encode_texts([c for c, ok in zip(chunks, plain, strict=True) if ok]))
        for ok in plain:
            payload, tokens, _ = next(coded) if ok else (b"", 0, 0)
            out.append((payload, tokens) if ok and tokens else None)
        return out

    def encode_texts(self, texts: list[bytes]) -> list[tuple[bytes, int, int]]:
        """(range-coder bytes, token count T, escape count E) per text; any bytes at all.

        Bytes without a single-byte token are taken out before tokenizing and coded as
        escapes between the tokens (lmzip/spans.py, EscapeCoder). A text without them
        gives exactly an lm record's payload."""
        self._set_threads()
        tok = self.engine.tokenizer
        escapable = tok.escapable
        stripped = [strip_escapes(t, escapable) for t in texts]
        tokenized = tok.encode_batch([c for c, _ in stripped], byte_fallback=True)
        seqs: list[list[int]] = []
        for ids in tokenized:
            if ids is None:  # cannot happen: every byte left has a single-byte token
                raise ValueError("text not tokenizable after escaping")
            seqs.append(ids)
        todo = [i for i, ids in enumerate(seqs) if ids]
        scored = dict(zip(todo, self.engine.score([seqs[i] for i in todo]) if todo else [], strict=True))
        values = [b for b in range(256) if escapable[b]]
        out = []
        for i, (ids, (_, escapes)) in enumerate(zip(seqs, stripped, strict=True)):
            enc = RangeEncoder()
            if i in scored:
                cums, freqs = scored[i]
                if not escapes:
                    enc.encode_many(cums, freqs)
                else:
                    lengths = [len(tok.id_to_bytes[t]) for t in ids]
                    points = escapes_by_point(escapes, lengths)
                    esc = EscapeCoder(values, len(escapes), len(ids))
                    cl, fl = cums.tolist(), freqs.tolist()
                    for j in range(len(ids)):
                        esc.encode_point(enc, j, points[j], lengths[j - 1] if j else 0)
                        if esc.left:
                            enc.encode(cl[j], fl[j])
                        else:
                            enc.encode_many(cums[j:], freqs[j:])
                            break
                    else:
                        esc.encode_point(enc, len(ids), points[len(ids)], lengths[-1])
            elif escapes:
                esc = EscapeCoder(values, len(escapes), 0)
                esc.encode_point(enc, 0, [(0, v) for _, v in escapes], 0)
            out.append((enc.finish(), len(ids), len(escapes)))
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        """Decode lm records' chunks (see decode_texts)."""
        return self.decode_texts([(p, t, 0) for p, t in items])

    def decode_texts(self, items: list[tuple[bytes, int, int]]) -> list[bytes]:
        """Inverse of encode_texts, in lock step, at most ``batch`` at a time; finished
        ones leave the batch. Escapes are decoded per slot between engine steps."""
        self._set_threads()
        tok = self.engine.tokenizer
        values = [b for b in range(256) if tok.escapable[b]]
        if any(e for _, _, e in items) and not values:
            raise CorruptChunkError("escapes declared, but every byte has a token")
        results: list[list[int]] = [[] for _ in items]
        found: list[list[list[tuple[int, int]]]] = [[] for _ in items]  # escapes per boundary
        waiting = list(range(len(items)))[::-1]
        capacity = max(1, min(self.batch, len(items)))
        decoder = self.engine.decoder(capacity)
        slot_item: dict[int, int] = {}
        coders: dict[int, RangeDecoder] = {}
        escs: dict[int, EscapeCoder] = {}

        def token_len(item: int) -> int:
            return len(tok.id_to_bytes[results[item][-1]]) if results[item] else 0

        def fill() -> None:
            for slot in range(capacity):
                while slot not in slot_item and waiting:
                    item = waiting.pop()
                    payload, tokens, escapes = items[item]
                    dec = RangeDecoder(payload)
                    esc = EscapeCoder(values, escapes, tokens)
                    found[item].append(esc.decode_point(dec, 0, 0))
                    if tokens == 0:
                        continue
                    slot_item[slot] = item
                    coders[slot], escs[slot] = dec, esc
                    decoder.begin(slot)

        fill()
        while slot_item:
            slots = decoder.active()
            targets = torch.tensor([coders[s].target() for s in slots], dtype=torch.long)
            symbols, lows, sizes = decoder.find(targets)
            pushes: dict[int, int] = {}
            for s, sym, low, f in zip(slots, symbols.tolist(), lows.tolist(), sizes.tolist(), strict=True):
                coders[s].consume(low, f)
                item = slot_item[s]
                results[item].append(sym)
                if escs[s].left:
                    found[item].append(escs[s].decode_point(coders[s], len(results[item]), token_len(item)))
                if len(results[item]) == items[item][1]:
                    decoder.finish(s)
                    del slot_item[s], coders[s], escs[s]
                else:
                    pushes[s] = sym
            if pushes:
                decoder.push(pushes)
            fill()
        out = []
        for ids, points in zip(results, found, strict=True):
            pieces = [tok.id_to_bytes[i] for i in ids]
            out.append(insert_escapes(pieces, points) if any(points) else b"".join(pieces))
        return out


def load_lm_codec(
    model: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch: int = defaults.BATCH,
    window: int | None = None,
    want: ModelInfo | None = None,
) -> LMCodec:
    """The codec for `model` (a --model argument; None: the default model), or, when
    `model` is None and `want` is given, for the model with `want`'s hashes.
    `threads`: None for lmzip.threads' default (usable CPUs less the load)."""
    check_device(device)  # before the model loads: a bad device is one line, not a traceback
    n = choose_threads(threads)
    if n:
        torch.set_num_threads(n)
    engine = Engine(load_model(model, want), window=window or defaults.WINDOW, device=device)
    return LMCodec(engine, batch, n)


def check_device(device: str) -> None:
    """Raises LmzipError (one line) unless torch can put a tensor on `device`."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise LmzipError(f"unknown device {device!r} ({_first_line(e)})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise LmzipError(
            f"--device {device}: CUDA is not available ({why}, torch {torch.__version__}); use --device cpu"
        )
    try:
        torch.empty(1, device=dev)
    except (AssertionError, RuntimeError, ValueError) as e:  # torch says AssertionError for some builds
        raise LmzipError(f"--device {device}: torch cannot use it ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """torch's message, cut to its first sentence (some run over hundreds of characters)."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."
