"""Stores by concern: one small protocol each (`protocols.py`), an embedded backend
(`memory.py`) and a Redis one (`redis/`), bundled per backend by `bundle.py`."""
