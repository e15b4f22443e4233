"""A stateful fake of the Postscript v2 API with an admin surface (docs/design/postscript-api.md,
docs/design/emulator.md)."""

__all__: list[str] = []
