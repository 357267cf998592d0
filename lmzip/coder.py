"""Range coder over integer frequency tables that sum to exactly 2**TOTAL_BITS.

Pure Python ints, no numpy/torch needed except as input to `encode_many`.

Model of the state (shared by encoder and decoder, see `_RangeCoder`):
the coder keeps the current interval as a 64-bit window [low, low + range) onto
an infinitely long binary fraction whose more significant bytes are already
written (encoder) or already consumed (decoder). Coding a symbol narrows the
interval to the symbol's share; whenever `range` drops below 2**48 the top byte
of the window is settled and shifted out, so `range` is always in [2**48, 2**64)
and `r = range >> TOTAL_BITS` has at least 24 bits of precision. The rounding
loss per symbol is below range / r / 2**24 - 1 <= 2**-24 relative, i.e. far
below 0.01% of the ideal code length.
"""

from __future__ import annotations

import numpy as np

TOTAL_BITS = 24
TOTAL = 1 << TOTAL_BITS

_STATE_BITS = 64
_MASK = (1 << _STATE_BITS) - 1
_BOTTOM = 1 << (_STATE_BITS - 16)  # renormalise below this: range stays >= 2**48
_TOP_SHIFT = _STATE_BITS - 8


class _RangeCoder:
    """State and the narrowing step shared by encoder and decoder.

    Invariants after every public call:
      * _BOTTOM <= range <= _MASK  (so r = range >> TOTAL_BITS >= 2**24);
      * encoder: 0 <= low <= _MASK; the final code value V satisfies
        low <= V < low + range (low + range may exceed 2**64: a later carry then
        ripples into bytes already written, which is why output stays mutable);
      * decoder: `code` holds V - low in the same 64-bit window, so for a valid
        stream 0 <= code < range.
    """

    def __init__(self) -> None:
        self.range = _MASK

    def _narrow(self, cum: int, freq: int) -> int:
        """Shrink range to the symbol's share; return the offset to add to low."""
        if freq < 1 or cum < 0 or cum + freq > TOTAL:
            raise ValueError(f"bad symbol bounds cum={cum} freq={freq}")
        r = self.range >> TOTAL_BITS
        # The top sliver range - r * TOTAL (< 2**24 out of >= 2**48) is never used.
        self.range = r * freq
        return r * cum


class RangeEncoder(_RangeCoder):
    def __init__(self) -> None:
        super().__init__()
        self.low = 0
        self._out = bytearray()

    def encode(self, cum: int, freq: int) -> None:
        self.low += self._narrow(cum, freq)
        self._carry_and_renormalise()

    def encode_many(self, cums: np.ndarray, freqs: np.ndarray) -> None:
        """Encode a whole chunk; same arithmetic as `encode`, inlined for speed.

        The loop body is a second copy of `_narrow` and `_carry_and_renormalise` (a method
        call per token costs more than the arithmetic); a change to either must be made
        here too: tests/test_coder.py test_encode_and_encode_many_agree holds the copies
        to the same bytes."""
        cum_arr = np.asarray(cums, dtype=np.int64)
        freq_arr = np.asarray(freqs, dtype=np.int64)
        if cum_arr.shape != freq_arr.shape or cum_arr.ndim != 1:
            raise ValueError("cums and freqs must be 1-D arrays of equal length")
        if cum_arr.size and (freq_arr.min() < 1 or cum_arr.min() < 0 or (cum_arr + freq_arr).max() > TOTAL):
            raise ValueError("bad symbol bounds in encode_many")
        cum_list, freq_list = cum_arr.tolist(), freq_arr.tolist()
        low, rng, out = self.low, self.range, self._out
        for cum, freq in zip(cum_list, freq_list, strict=True):
            r = rng >> TOTAL_BITS
            low += r * cum
            rng = r * freq
            if low > _MASK:
                low &= _MASK
                _propagate_carry(out)
            while rng < _BOTTOM:
                out.append(low >> _TOP_SHIFT)
                low = (low << 8) & _MASK
                rng <<= 8
        self.low, self.range = low, rng

    def finish(self) -> bytes:
        """Flush and return the code; the encoder must not be used afterwards.

        Picks the value in [low, low + range) with the most trailing zero bits,
        writes it, then drops all trailing zero bytes: the decoder reads zeros
        past the end, so they carry no information. An empty stream is b"".
        """
        low, high = self.low, self.low + self.range  # V must be in [low, high)
        for bits in range(_STATE_BITS + 8, -1, -1):
            unit = 1 << bits
            value = -(-low // unit) * unit  # round low up to a multiple of unit
            if value < high:
                break
        if value > _MASK:
            _propagate_carry(self._out)
            value &= _MASK
        self._out += value.to_bytes(_STATE_BITS // 8, "big")
        return bytes(self._out.rstrip(b"\x00"))

    def _carry_and_renormalise(self) -> None:
        if self.low > _MASK:
            self.low &= _MASK
            _propagate_carry(self._out)
        while self.range < _BOTTOM:
            self._out.append(self.low >> _TOP_SHIFT)
            self.low = (self.low << 8) & _MASK
            self.range <<= 8


def _propagate_carry(out: bytearray) -> None:
    # Cannot run off the front: V < initial low + range = 2**64 - 1 always.
    i = len(out) - 1
    while out[i] == 0xFF:
        out[i] = 0
        i -= 1
    out[i] += 1


class RangeDecoder(_RangeCoder):
    """Mirror of RangeEncoder. Never raises on short or garbage data: missing
    bytes read as zero and `target` is clamped, so the caller just gets wrong
    symbols, which its CRC check catches."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = bytes(data)
        self._pos = 0
        self.code = 0
        for _ in range(_STATE_BITS // 8):
            self.code = (self.code << 8) | self._next_byte()

    def target(self) -> int:
        """A value in [0, TOTAL): the symbol is the one with cum <= target < cum + freq."""
        return min((self.code // (self.range >> TOTAL_BITS)), TOTAL - 1)

    def consume(self, cum: int, freq: int) -> None:
        # Masking keeps `code` bounded even when garbage makes it leave [0, range).
        self.code = (self.code - self._narrow(cum, freq)) & _MASK
        while self.range < _BOTTOM:
            self.code = ((self.code << 8) | self._next_byte()) & _MASK
            self.range <<= 8

    def _next_byte(self) -> int:
        pos = self._pos
        self._pos = pos + 1
        return self._data[pos] if pos < len(self._data) else 0
