"""The development signing key: one random key per machine, kept in a private file so
that the server's workers and `kairos sign` agree. Never used in production."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from app.settings.values import MIN_SECRET_LENGTH, ConfigError

log = logging.getLogger("kairos.settings")


def development_key(path: Path) -> str:
    """The key in `path`, created there (mode 0600) when missing. Where no file can be
    written, a key for this process only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # mkdir also raises it when the parent is a regular file: that is no key file.
        if path.parent.is_dir():
            return _read(path)
        fd = -1
    except OSError:
        fd = -1
    if fd < 0:
        log.warning("cannot write %s: using a key for this process only", path)
        return secrets.token_urlsafe(48)
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _read(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the development key file {path}: {exc}") from None
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"development key file {path} is damaged: delete it")
    return key
