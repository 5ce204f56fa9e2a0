"""Events: ingest in two dialects, the live profile they build, and erasure."""
