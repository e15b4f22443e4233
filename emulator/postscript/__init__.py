"""A stateful fake of the Postscript v2 API (SPEC §2) with an admin surface (SPEC §7)."""
