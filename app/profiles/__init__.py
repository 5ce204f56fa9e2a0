"""Readers' profiles: the document's schema, and the cache in front of the profile store
(the stores themselves are in app/stores)."""
