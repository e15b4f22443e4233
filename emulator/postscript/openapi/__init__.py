"""The OpenAPI document the emulator serves at `/openapi.json`, built from its own rules."""

__all__: list[str] = []
