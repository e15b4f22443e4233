"""`python -m postscript_audience_lab.lab.reliability`: the suite's command line.

The suite's types live in its modules, not in `__main__`, so the worker processes it
spawns unpickle them by their importable names; those workers import this module again as
`__mp_main__`, so the command runs only under `__main__`.
"""

from postscript_audience_lab.lab.reliability.suite import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
