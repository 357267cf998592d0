"""The LM codec: chunk bytes -> tokens -> engine frequencies -> range-coded payload, and back.

Compression scores whole chunks at once (prefill); decompression advances every chunk
of a group by one token per engine step, each with its own range decoder.
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
from lmzip.errors import LmzipError
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
        self._set_threads()
        tokenized = self.engine.tokenizer.encode_batch(chunks)
        todo = [i for i, t in enumerate(tokenized) if t]
        scored = self.engine.score([tokenized[i] for i in todo]) if todo else []
        out: list[tuple[bytes, int] | None] = [None] * len(chunks)
        for i, (cums, freqs) in zip(todo, scored, strict=True):
            enc = RangeEncoder()
            enc.encode_many(cums, freqs)
            out[i] = (enc.finish(), len(freqs))
        return out

    def decode_chunks(self, items: list[tuple[bytes, int]]) -> list[bytes]:
        """Decode chunks in lock step, at most ``batch`` at a time; finished ones leave the batch."""
        self._set_threads()
        results: list[list[int]] = [[] for _ in items]
        waiting = list(range(len(items)))[::-1]
        capacity = max(1, min(self.batch, len(items)))
        decoder = self.engine.decoder(capacity)
        slot_item: dict[int, int] = {}
        coders: dict[int, RangeDecoder] = {}

        def fill() -> None:
            for slot in range(capacity):
                if slot not in slot_item and waiting:
                    item = waiting.pop()
                    if items[item][1] == 0:
                        continue
                    slot_item[slot] = item
                    coders[slot] = RangeDecoder(items[item][0])
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
                if len(results[item]) == items[item][1]:
                    decoder.finish(s)
                    del slot_item[s], coders[s]
                else:
                    pushes[s] = sym
            if pushes:
                decoder.push(pushes)
            fill()
        return [self.engine.tokenizer.decode(r) for r in results]


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
