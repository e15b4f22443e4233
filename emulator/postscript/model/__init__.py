"""What the emulator holds and how it behaves, apart from HTTP: subscribers, shops,
keywords, texts, webhooks and their clock."""

__all__: list[str] = []
