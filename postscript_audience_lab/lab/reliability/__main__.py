"""`python -m postscript_audience_lab.lab.reliability`: the suite's command line.

The suite's types live in its modules, not in `__main__`, so the worker processes it
spawns unpickle them by their importable names.
"""

from postscript_audience_lab.lab.reliability.seed import main

if __name__ == "__main__":
    main()
