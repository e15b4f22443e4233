"""`pslab bench`: both systems on one seeded workload, in separate processes, measured.

- `child` runs one system in a spawned process and reports its own peak memory;
- `run` generates the workload, serves the emulator and runs both systems (and
  the million-event stream), returning a `lab.comparison.Comparison`;
- `targets` says which acceptance targets a result misses;
- `command` is the `pslab bench` command; rendering is `lab.render`'s.
"""

__all__: list[str] = []
