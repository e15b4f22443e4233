"""This shop's own emulator: a warehouse that ships what is in stock."""

__all__ = ["OWNER", "in_stock"]

OWNER = "crowded-names"


def in_stock(sku: str) -> bool:
    return not sku.startswith("OOS-")
