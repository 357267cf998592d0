"""lmzip: a gzip-like compressor driven by a local language model.

The Python API (lmzip.api) in the manner of the gzip, lzma and zstandard modules:
`compress`, `decompress`, `open`/`LmzipFile`, and `Compressor`/`Decompressor` that keep
the model loaded across calls. Importing lmzip stays cheap: no torch until a chunk
needs the model.
"""

from lmzip.api import (
    Compressor,
    CorruptChunkError,
    Decompressor,
    FormatError,
    LmzipError,
    LmzipFile,
    ModelMismatchError,
    ModelNotFoundError,
    Stats,
    compress,
    decompress,
    open,
)

__version__ = "0.1.0"

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
    "__version__",
    "compress",
    "decompress",
    "open",
]
