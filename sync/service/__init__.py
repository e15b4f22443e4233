"""`pslab serve`'s web service around the engine: intake, the drain loop, status and metrics."""

__all__: list[str] = []
