"""Segment Engage traffic: events, scenarios, delivery faults, strategies and the baseline."""

__all__: list[str] = []
