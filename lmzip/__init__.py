"""lmzip: a gzip-like compressor driven by a local language model.

Kept import-free on purpose: `import lmzip` must stay cheap for the CLI.
"""

__version__ = "0.1.0"
