"""The Postscript emulator, Segment Engage traffic and the baseline destination."""
