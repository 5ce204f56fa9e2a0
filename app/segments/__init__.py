"""Segments: rules a designer declares in a TOML file, evaluated from a reader's profile and
kept event history (pure functions; storing and streaming entries is wired elsewhere)."""
