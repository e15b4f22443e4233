"""Postscript audience sync lab: one import package for everything the `pslab` command runs.

- `postscript_audience_lab.sync`: the engine (Segment Engage events in, Postscript
  subscriber membership out);
- `postscript_audience_lab.emulator`: the fakes of the outside world (Postscript's API, Segment's
  traffic) and, in `.emulator.testing`, the pytest plugin and the tools for a user's own tests;
- `postscript_audience_lab.contracts`: recorded Postscript interactions and their checks;
- `postscript_audience_lab.lab`: the `pslab` command line, the demo and the benchmarks.

In a source checkout the first three are the repository's top-level folders, linked in here;
the wheel places them inside this package (docs/design/layout.md#one-import-package).
"""

__all__: list[str] = []

# The one place the version is written: the build reads it from here (pyproject.toml).
__version__ = "0.2.0"
