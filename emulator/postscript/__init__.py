"""A stateful fake of the Postscript v2 API with an admin surface (docs/design.md §2, §7)."""

__all__: list[str] = []
