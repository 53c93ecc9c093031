"""Built-in actors and helpers for reliable async processing, built on ``runtime``'s public API."""

__all__: list[str] = []
