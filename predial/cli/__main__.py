"""`python -m predial.cli` runs the `predial` command."""

from . import main

main()
