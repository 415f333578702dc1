"""`python -m predial` runs the `predial` command."""

from .cli import main

main()
