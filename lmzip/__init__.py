"""lmzip: a gzip-like compressor driven by a local language model.

The Python API (lmzip.api) in the manner of the gzip, lzma and zstandard modules:
`compress`, `decompress`, `open`/`LmzipFile`, and `Compressor`/`Decompressor` that keep
the model loaded across calls. Importing lmzip stays cheap: no torch until a chunk
needs the model.
"""

from lmzip import api
from lmzip.api import *  # noqa: F403  (the public surface: api.__all__)

__version__ = "0.1.0"

__all__ = [*api.__all__, "__version__"]  # the API module says what is public
