"""The Postscript emulator, Segment Engage traffic and the baseline destination."""

__all__: list[str] = []
