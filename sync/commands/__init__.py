"""The engine's command-line front ends: `pslab sync`, `serve` and `reconcile`."""

__all__: list[str] = []
