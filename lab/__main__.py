"""`python -m lab` is `pslab`."""

from lab.cli import main

__all__: list[str] = []

main()
