"""The `pslab` program and the side-by-side lab.

The only package that wires the fakes of the outside world (`emulator`), the
engine (`sync`) and the contract harness (`contracts`) together: the command
line, and `pslab demo` / `pslab bench`, which run the engine and the Segment
destination's algorithm on one workload and compare them.
"""

__all__: list[str] = []
