"""Errors lmzip reports to users: each message is one line, naming what is wrong."""


class LmzipError(Exception):
    """Base of every expected failure; the CLI prints str(e) and exits non-zero."""


class FormatError(LmzipError):
    """The archive is not a (readable) lmzip file: bad magic, version, layout or limits."""


class CorruptChunkError(LmzipError):
    """A chunk's data does not decode to what its CRC promises."""


class ModelMismatchError(LmzipError):
    """The archive was made with a model/tokenizer/numerics other than the one loaded."""


class ModelNotFoundError(LmzipError):
    """The language model an archive (or the user) asks for is not installed."""
