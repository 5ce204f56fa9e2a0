"""Profile store: one async protocol, an embedded and a Redis backend, a cache in front."""
