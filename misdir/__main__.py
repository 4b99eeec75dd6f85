"""`python -m misdir`: the command line."""

from misdir.cli import main

main()
