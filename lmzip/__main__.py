"""`python -m lmzip` runs the command-line tool."""

from lmzip.cli import main

main()
