"""Kairos: open-time and send-time email personalization."""

__version__ = "0.1.0"
