"""Cross-cutting concerns as plain ASGI middleware."""
