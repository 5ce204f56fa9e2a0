"""The Redis backend: the production and scale-out one. Its stores share one
`RedisConnection`; `keys.py` is the whole key layout."""
