"""This shop's own experiments."""

__all__ = ["OWNER"]

OWNER = "crowded-names"
