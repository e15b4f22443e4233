"""This shop's own contracts with its carriers."""

__all__ = ["CARRIERS", "OWNER"]

OWNER = "crowded-names"
CARRIERS = ("UPS", "DHL")
