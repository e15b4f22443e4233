"""The emulator's HTTP layer: the Starlette app, its handlers, middleware and server."""

__all__: list[str] = []
