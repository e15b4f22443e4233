"""Recorded Postscript interactions and the harness that replays, verifies and records them."""
