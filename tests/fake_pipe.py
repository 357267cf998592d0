"""A stand-in for a pipe in tests: unseekable, and every read returns a short count."""

from __future__ import annotations

import io


class Pipe(io.RawIOBase):
    def __init__(self, data: bytes, step: int = 5) -> None:
        self.data = memoryview(data)
        self.step = step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n if n >= 0 else len(self.data), self.step)
        out, self.data = bytes(self.data[:n]), self.data[n:]
        return out

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        out = self.read(len(buf))
        buf[: len(out)] = out
        return len(out)
