"""lmzip's Python API, in the manner of the gzip, lzma and zstandard modules.

    import lmzip

    blob = lmzip.compress(b"Alice was beginning to get very tired")   # bytes -> .lmz bytes
    assert lmzip.decompress(blob) == b"Alice was beginning to get very tired"

    with lmzip.open("notes.txt.lmz", "wt", encoding="utf-8") as f:   # a streaming file object
        for line in lines:
            f.write(line)

    c = lmzip.Compressor(level=9)        # loads the model once, at the first chunk that needs it
    archives = [c.compress(doc) for doc in docs]

Three layers, as in gzip.py: one-call functions (`compress`, `decompress`); objects that
keep the model loaded across calls (`Compressor`, `Decompressor`); a file object
(`LmzipFile`, `open`) that streams through them. The command line (lmzip.files) is built
on the same objects.

Errors: a damaged or foreign archive raises `FormatError` (not an lmzip archive, or its
layout is broken) or `CorruptChunkError` (data that does not match its checksums); the
model an archive needs raises `ModelNotFoundError` when it is not installed and
`ModelMismatchError` when another one is given. All four are `LmzipError`.

Importing lmzip loads no torch: the model loads at the first chunk that needs it.
"""

from __future__ import annotations

import atexit
import builtins
import dataclasses
import inspect
import io
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from typing import IO, Any, BinaryIO, Literal

from lmzip import defaults
from lmzip.container import check_chunk_size
from lmzip.errors import CorruptChunkError, FormatError, LmzipError, ModelMismatchError, ModelNotFoundError
from lmzip.pipeline import (
    CompressOptions,
    DecompressOptions,
    ModelCodec,
    ProgressFn,
    Stats,
    compress_stream,
    decompress_stream,
    load_codec,
)

__all__ = [
    "Compressor",
    "CorruptChunkError",
    "Decompressor",
    "FormatError",
    "LmzipError",
    "LmzipFile",
    "ModelMismatchError",
    "ModelNotFoundError",
    "Stats",
    "compress",
    "decompress",
    "open",
]

READ_BUFFER_SIZE = 128 * 1024  # LmzipFile's read buffer, as gzip's
_HANDOFF = 1 << 16  # bytes handed between the caller and a stream's worker thread at once
_HANDOFF_DEPTH = 16  # blocks in flight: bounds a stream's memory besides the pipeline's group

CodecFactory = Callable[[Any], ModelCodec]
BytesLike = bytes | bytearray | memoryview


# --------------------------------------------------------------------------- reusable objects


class _SharedCodec:
    """An LM codec that one thread at a time may use: streams in other threads, or a stream
    and a one-call function, take turns. Every method call of the codec (encode_chunks,
    encode_texts, finish_group, decode_chunks, decode_texts: one group of chunks each)
    holds the lock; what the codec lacks stays missing, as without the wrapper."""

    def __init__(self, codec: ModelCodec, lock: threading.Lock) -> None:
        self._codec = codec
        self._lock = lock
        self.identity = codec.identity

    def __getattr__(self, name: str) -> Any:  # numerics_version, context_window, ...
        attr = getattr(self._codec, name)
        if name == "fresh":  # the same engine with an empty file-wide memory, behind the same lock:
            return lambda: _SharedCodec(attr(), self._lock)  # streams sharing a Compressor never share a memory
        if not inspect.ismethod(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


class Compressor:
    """Compresses with one set of options and keeps the LM codec between calls.

    `level` 1..9 (default 6) sets the chunk size and context window (level 1: no model,
    stored/zstd records only; see docs/levels.md); `chunk_size`, `window` and `use_lm`
    override the level's values. `model` is a model name or GGUF path (None: the default
    model), `threads` the CPU threads for the model (None: the CPUs this process may use,
    less the load), `batch` the chunks evaluated together. `codec_factory(options)` may
    supply the LM codec (tests and tools); by default the model is loaded at the first
    chunk that needs it, once per Compressor. Safe to share between threads (model calls
    take turns).
    """

    def __init__(
        self,
        level: int | None = None,
        *,
        chunk_size: int | None = None,
        window: int | None = None,
        use_lm: bool | None = None,
        model: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        batch: int = defaults.BATCH,
        memory_block: int | None = None,
        codec_factory: CodecFactory | None = None,
    ) -> None:
        lv = defaults.level_settings(level, chunk_size=chunk_size, window=window, use_lm=use_lm)
        check_chunk_size(lv.chunk_size, LmzipError)  # as the pipeline reports it
        self.options = CompressOptions(
            chunk_size=lv.chunk_size,
            window=lv.window,
            use_lm=lv.use_lm,
            model=model,
            device=device,
            threads=threads,
            batch=batch,
            memory_block=memory_block,
            codec_factory=self._codec,
        )
        self._factory = codec_factory
        self._lock = threading.Lock()
        self._loaded: _SharedCodec | None = None

    @classmethod
    def from_options(cls, options: CompressOptions) -> Compressor:
        """A Compressor with the pipeline's options (their name and mtime are per call)."""
        return cls(
            chunk_size=options.chunk_size,
            window=options.window,
            use_lm=options.use_lm,
            model=options.model,
            device=options.device,
            threads=options.threads,
            batch=options.batch,
            memory_block=options.memory_block,
            codec_factory=options.codec_factory,
        )

    def _codec(self, options: CompressOptions) -> ModelCodec:
        with self._lock:
            if self._loaded is None:
                codec = load_codec(dataclasses.replace(options, codec_factory=self._factory))
                self._loaded = _SharedCodec(codec, self._lock)
        return self._loaded

    def copy_stream(
        self,
        src: BinaryIO,
        dst: BinaryIO,
        *,
        name: str | None = None,
        mtime: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Stats:
        """Compress everything `src.read()` gives into `dst`; returns the sizes and record counts.
        `name` and `mtime` are stored in the header (as gzip -N does); `progress(n)` is
        called with the input bytes just consumed."""
        options = dataclasses.replace(self.options, name=name, mtime=mtime)
        return compress_stream(src, dst, options, progress=progress)

    def compress(self, data: BytesLike, *, name: str | None = None, mtime: int | None = None) -> bytes:
        """The .lmz archive of `data`."""
        out = io.BytesIO()
        self.copy_stream(io.BytesIO(data), out, name=name, mtime=mtime)
        return out.getvalue()


class Decompressor:
    """Decompresses archives and keeps the LM codec of the last archive's model between calls.

    An archive names its model, window and numerics, so no options are needed; `model`
    gives a name or GGUF path to use instead of the named one (its hashes must still
    match), `threads`/`batch`/`device` as for `Compressor`. Safe to share between threads.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        batch: int = defaults.BATCH,
        codec_factory: CodecFactory | None = None,
    ) -> None:
        self.options = DecompressOptions(
            model=model, device=device, threads=threads, batch=batch, codec_factory=self._codec
        )
        self._factory = codec_factory
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._loaded: _SharedCodec | None = None

    @classmethod
    def from_options(cls, options: DecompressOptions) -> Decompressor:
        """A Decompressor with the pipeline's options (the window comes from each archive)."""
        return cls(
            model=options.model,
            device=options.device,
            threads=options.threads,
            batch=options.batch,
            codec_factory=options.codec_factory,
        )

    def _codec(self, options: DecompressOptions) -> ModelCodec:
        # The pipeline asks with the archive's model and window filled in: a codec serves
        # every archive that asks with the same options.
        key = tuple(repr(getattr(options, f.name)) for f in dataclasses.fields(options) if f.name != "codec_factory")
        with self._lock:
            if self._loaded is None or self._key != key:
                self._loaded = None  # one model in memory at a time
                codec = load_codec(dataclasses.replace(options, codec_factory=self._factory))
                self._loaded, self._key = _SharedCodec(codec, self._lock), key
            return self._loaded

    def copy_stream(self, src: BinaryIO, dst: BinaryIO, *, progress: ProgressFn | None = None) -> Stats:
        """Decompress the archive `src.read()` gives into `dst`, checking every checksum;
        `progress(n)` is called with the archive bytes just consumed."""
        return decompress_stream(src, dst, self.options, progress=progress)

    def test(self, src: BinaryIO | BytesLike, *, progress: ProgressFn | None = None) -> Stats:
        """Decode the whole archive and check it, keeping nothing (what `lmzip -t` does)."""
        stream = io.BytesIO(src) if isinstance(src, bytes | bytearray | memoryview) else src
        return decompress_stream(stream, None, self.options, progress=progress, verify_only=True)

    def decompress(self, data: BytesLike) -> bytes:
        """The original bytes of the archive `data`."""
        out = io.BytesIO()
        self.copy_stream(io.BytesIO(data), out)
        return out.getvalue()


# --------------------------------------------------------------------------- one-call functions


def compress(
    data: BytesLike,
    level: int | None = None,
    *,
    name: str | None = None,
    mtime: int | None = None,
    **options: Any,
) -> bytes:
    """The .lmz archive of `data`; `level` and `options` as for `Compressor`.

    Each call loads the model anew (a second or more): to compress many inputs, keep a
    `Compressor`."""
    return Compressor(level, **options).compress(data, name=name, mtime=mtime)


def decompress(data: BytesLike, **options: Any) -> bytes:
    """The original bytes of the archive `data`; `options` as for `Decompressor`.

    Raises FormatError or CorruptChunkError for a damaged archive (see the module's
    docstring). To decompress many archives, keep a `Decompressor`."""
    return Decompressor(**options).decompress(data)


# --------------------------------------------------------------------------- streams


class _End:
    """Marks the end of a worker's stream."""


_END = _End()


class _Stopped(Exception):
    """Raised inside a worker thread whose stream was closed early."""


class _Worker:
    """Runs one pipeline call in a daemon thread; data crosses over a bounded queue.

    The pipeline pulls its input and pushes its output, so a stream that the caller reads
    from (or writes to) runs it in a thread of its own; the queue carries blocks of at
    most _HANDOFF bytes, _HANDOFF_DEPTH at a time. An exception in the thread reaches the
    caller at its next read, write or close."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.q: queue.Queue[object] = queue.Queue(maxsize=_HANDOFF_DEPTH)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._target = target
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e
        finally:
            self.done()

    def done(self) -> None:
        """Called in the worker when it ends (overridden by the reader to queue the end)."""

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class _ReadWorker(_Worker):
    """Decompresses in its thread; `readinto` takes the output in the caller's thread."""

    def __init__(self, fp: BinaryIO, decompressor: Decompressor) -> None:
        super().__init__(lambda: decompressor.copy_stream(fp, self), "lmzip-read")  # type: ignore[arg-type]
        self._pending = memoryview(b"")
        self._eof = False

    # -- worker side: the pipeline writes here
    def write(self, data: BytesLike) -> int:
        view = memoryview(data).cast("B")
        for i in range(0, len(view), _HANDOFF):
            self._put(bytes(view[i : i + _HANDOFF]))
        return len(view)

    def flush(self) -> None:
        pass

    def _put(self, item: object) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def done(self) -> None:
        try:
            self._put(_END)
        except _Stopped:
            pass

    # -- caller side
    def readinto(self, buf: memoryview) -> int:
        if self.thread.ident is None:
            self.thread.start()
        while not self._pending:
            if self._eof:
                self.raise_error()  # again, at every read after a failure
                return 0
            item = self._get()
            if item is _END:
                self._eof = True
            else:
                self._pending = memoryview(item)  # type: ignore[arg-type]
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _get(self) -> object:
        while True:
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.q.empty():  # ended without a word: treat as the end
                    return _END

    def close(self) -> None:
        """Stop decoding: the thread ends at its next output (after the group it decodes)."""
        self.stop.set()
        if self.thread.ident is not None:
            while True:  # unblock a waiting put
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break
            if not sys.is_finalizing():
                self.thread.join(timeout=0.2)  # a long group keeps decoding in the background


class _WriteWorker(_Worker):
    """Compresses in its thread; `put` hands it the caller's data."""

    def __init__(self, fp: BinaryIO, compressor: Compressor, name: str | None, mtime: int | None) -> None:
        super().__init__(
            lambda: compressor.copy_stream(self, fp, name=name, mtime=mtime),  # type: ignore[arg-type]
            "lmzip-write",
        )
        self._pending = memoryview(b"")
        self._eof = False

    # -- worker side: the pipeline reads here
    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while part := self.read(_HANDOFF):
                parts.append(part)
            return b"".join(parts)
        while not self._pending and not self._eof:
            item = self.q.get()
            if item is _END:
                self._eof = True
            else:
                self._pending = memoryview(item)  # type: ignore[arg-type]
        out = bytes(self._pending[:n])
        self._pending = self._pending[n:]
        return out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    # -- caller side
    def put(self, item: object) -> None:
        if self.thread.ident is None:
            self.thread.start()
        while True:
            if not self.thread.is_alive():
                self.raise_error()
                raise ValueError("lmzip: the compressing thread has ended")
            try:
                self.q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.put(_END)
        self.thread.join()
        self.raise_error()


class _ReadRaw(io.RawIOBase):
    """The raw stream under LmzipFile's read buffer."""

    def __init__(self, worker: _ReadWorker) -> None:
        self._worker = worker

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._worker.readinto(memoryview(buf).cast("B"))

    def close(self) -> None:
        if not self.closed:
            self._worker.close()
        super().close()


_READ, _WRITE = "rb", "wb"
_open_writers: weakref.WeakSet[LmzipFile] = weakref.WeakSet()


@atexit.register
def _close_writers() -> None:
    """An archive left open at exit is ended as close() would (its worker can still run now)."""
    for f in list(_open_writers):
        f.close()


class LmzipFile(io.BufferedIOBase):
    """A binary file object over an .lmz archive, like gzip.GzipFile: `read` decompresses
    as it goes, `write` compresses (in whole chunks, as the input fills them).

    `filename` is a path or a binary file object (not closed by `close`). `mode`: "r"/"rb"
    read, "w"/"wb" write (truncating), "x"/"xb" write a new file. Writing takes a
    `Compressor` or `level` and its options, plus `name`/`mtime` to store in the header;
    reading takes a `Decompressor` or its options. Share one of those between files to
    load the model once.

    The pipeline runs in a thread of its own behind the file (it pulls input and pushes
    output); memory stays bounded by a group of chunks. `flush` does not end a chunk:
    the data written so far is compressed when a chunk fills or at `close`. Closing a
    reader before its end stops decoding after the group of chunks it is working on.
    Not seekable.
    """

    def __init__(
        self,
        filename: str | bytes | os.PathLike[str] | os.PathLike[bytes] | IO[bytes],
        mode: str = "rb",
        *,
        level: int | None = None,
        compressor: Compressor | None = None,
        decompressor: Decompressor | None = None,
        name: str | None = None,
        mtime: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if mode in ("r", "rb"):
            self.mode = _READ
        elif mode in ("w", "wb", "x", "xb"):
            self.mode = _WRITE
        else:
            raise ValueError(f"invalid mode: {mode!r}")
        if isinstance(filename, str | bytes | os.PathLike):
            self._fp: IO[bytes] = builtins.open(filename, mode.rstrip("b") + "b")
            self._owns_fp = True
            self.name = os.fsdecode(filename)
        elif hasattr(filename, "read") or hasattr(filename, "write"):
            self._fp = filename
            self._owns_fp = False
            self.name = getattr(filename, "name", "")
        else:
            raise TypeError("filename must be a str, bytes, os.PathLike or file object")
        self._pos = 0
        self._buffer: io.BufferedReader | None = None
        self._writer: _WriteWorker | None = None
        self._pending = bytearray()
        try:
            if self.mode == _READ:
                if compressor is not None or level is not None or name is not None or mtime is not None:
                    raise TypeError("a reader takes no Compressor, level, name or mtime")
                dec = decompressor if decompressor is not None else Decompressor(**options)
                if decompressor is not None and options:
                    raise TypeError("options go to the Decompressor given")
                self._buffer = io.BufferedReader(_ReadRaw(_ReadWorker(self._fp, dec)), READ_BUFFER_SIZE)
            else:
                if decompressor is not None:
                    raise TypeError("a writer takes no Decompressor")
                if compressor is not None and (options or level is not None):
                    raise TypeError("level and options go to the Compressor given")
                comp = compressor if compressor is not None else Compressor(level, **options)
                self._writer = _WriteWorker(self._fp, comp, name, mtime)  # type: ignore[arg-type]
                _open_writers.add(self)
        except BaseException:
            if self._owns_fp:
                self._fp.close()
            raise

    # -- state
    def readable(self) -> bool:
        self._check_open()
        return self.mode == _READ

    def writable(self) -> bool:
        self._check_open()
        return self.mode == _WRITE

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        """Uncompressed bytes read or written so far."""
        self._check_open()
        return self._pos

    def fileno(self) -> int:
        return self._fp.fileno()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _reader(self) -> io.BufferedReader:
        self._check_open()
        if self._buffer is None:
            raise io.UnsupportedOperation("read() on a write-only LmzipFile")
        return self._buffer

    # -- reading
    def read(self, size: int | None = -1) -> bytes:
        data = self._reader().read(size)
        self._pos += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        data = self._reader().read1(size)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self._reader().readinto(b)
        self._pos += n
        return n

    def readinto1(self, b: Any) -> int:
        n = self._reader().readinto1(b)
        self._pos += n
        return n

    def peek(self, size: int = 0) -> bytes:
        return self._reader().peek(size)

    def readline(self, size: int | None = -1) -> bytes:
        line = self._reader().readline(size)
        self._pos += len(line)
        return line

    # -- writing
    def write(self, data: Any) -> int:
        self._check_open()
        if self._writer is None:
            raise io.UnsupportedOperation("write() on a read-only LmzipFile")
        view = memoryview(data).cast("B")
        self._pending += view
        while len(self._pending) >= _HANDOFF:
            self._writer.put(bytes(self._pending[:_HANDOFF]))
            del self._pending[:_HANDOFF]
        self._pos += len(view)
        return len(view)

    def flush(self) -> None:
        """Does nothing but check the file is open: data is compressed a chunk at a time,
        as the input fills it, and the archive ends at close()."""
        self._check_open()

    def close(self) -> None:
        """Ends the archive (writing) and closes the file if this object opened it."""
        if self.closed:
            return
        _open_writers.discard(self)
        try:
            if sys.is_finalizing():
                pass  # worker threads no longer run: the archive stays unfinished
            elif self._writer is not None:
                if self._pending:
                    self._writer.put(bytes(self._pending))
                    self._pending.clear()
                self._writer.finish()
                self._fp.flush()
            elif self._buffer is not None:
                self._buffer.close()
        finally:
            try:
                if self._owns_fp:
                    self._fp.close()
            finally:
                super().close()


def open(  # noqa: A001 - the module's name for it, as gzip.open
    file: str | bytes | os.PathLike[str] | os.PathLike[bytes] | IO[bytes],
    mode: Literal["r", "rb", "w", "wb", "x", "xb", "rt", "wt", "xt"] | str = "rb",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    **kwargs: Any,
) -> LmzipFile | io.TextIOWrapper:
    """Open an .lmz archive in binary ("rb", "wb", "xb") or text ("rt", "wt", "xt") mode,
    like gzip.open; `kwargs` go to LmzipFile (level, compressor, decompressor, name,
    mtime, model, threads, ...)."""
    if "t" in mode:
        if "b" in mode:
            raise ValueError(f"invalid mode: {mode!r}")
        binary = LmzipFile(file, mode.replace("t", "b"), **kwargs)
        return io.TextIOWrapper(binary, encoding, errors, newline)
    if encoding is not None or errors is not None or newline is not None:
        raise ValueError("encoding, errors and newline are for text mode only")
    return LmzipFile(file, mode, **kwargs)
