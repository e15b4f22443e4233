"""`python -m lab` is `pslab`."""

from lab.cli import main

main()
