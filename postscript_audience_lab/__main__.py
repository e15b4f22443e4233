"""`python -m postscript_audience_lab` is `pslab`."""

from postscript_audience_lab.lab.cli import main

__all__: list[str] = []

main()
