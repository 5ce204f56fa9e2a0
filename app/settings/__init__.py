"""Settings: read once from the environment, validated at start-up, immutable after.

Every setting is one row of `SETTINGS` (app/settings/table.py); this module turns the
rows into a typed `Settings` and adds the rules that tie settings together."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.settings.devkey import development_key
from app.settings.smtp import SmtpUrl
from app.settings.table import PROJECT_ROOT, SETTINGS, Setting, describe
from app.settings.values import (
    MIN_API_KEY_LENGTH,
    MIN_DISTINCT_CHARACTERS,
    MIN_SECRET_LENGTH,
    ConfigError,
    Secret,
)

__all__ = [
    "ENV_VARS",
    "MIN_API_KEY_LENGTH",
    "MIN_SECRET_LENGTH",
    "PROJECT_ROOT",
    "SETTINGS",
    "ConfigError",
    "Secret",
    "Setting",
    "Settings",
    "describe",
]

# The variables the server reads, in the table's (and the README's) order.
ENV_VARS = tuple(setting.var for setting in SETTINGS)


@dataclass(frozen=True)
class Settings:
    """Every knob of the server: one attribute per row of `SETTINGS`, with the types the
    rows' parsers give. Build with `Settings.from_env()`; defaults live in the table."""

    env: str
    secret_keys: tuple[Secret, ...]
    api_keys: tuple[Secret, ...]
    write_keys: tuple[Secret, ...]
    redis_url: Secret | None
    public_url: str
    message_id_domain: str
    smtp_url: SmtpUrl | None
    amp_senders: tuple[str, ...]
    budget_ms: int
    upstream_hosts: tuple[str, ...]
    upstream_private_hosts: tuple[str, ...]
    recs_cooccurrence: bool
    recs_neighbours: int
    recs_url: str | None
    recs_timeout_s: float
    cache_ttl_s: float
    cache_size: int
    max_body_bytes: int
    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float
    events_max_body_bytes: int
    events_max_count: int
    event_max_bytes: int
    dedupe_window_s: int
    events_warm_readers: int
    events_in_flight: int
    events_wait_s: float
    history_events: int
    history_days: int
    event_origins: tuple[str, ...]
    rate_api: int
    rate_events: int
    redis_timeout_ms: int
    redis_pool_size: int
    store_retry_ms: int
    demo_data: bool
    fallbacks_dir: Path
    blocks_dir: Path
    templates_dir: Path
    segments_file: Path
    segments_sweep_s: int
    segments_stream_max: int
    reload_templates: bool
    designer: bool
    catalog_assets_dir: Path | None
    image_cache_bytes: int
    image_workers: int
    image_max_bytes: int
    log_level: str
    dev_secret_file: Path
    host: str
    port: int
    workers: int
    metrics_dir: Path | None
    client_api_key: Secret | None
    amp_validator_dir: Path
    # Not a variable: set by `with_development_key` when it supplied `secret_keys`.
    generated_secret: bool = field(default=False, compare=False)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def budget_s(self) -> float:
        return self.budget_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build and validate settings from `environ` (default: `os.environ`). Reads
        only; nothing is written (see `with_development_key`)."""
        e = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            values[setting.attr] = setting.read(e, values)
        settings = cls(**values)
        if settings.production:
            _check_production(settings, e)
        return settings

    def with_development_key(self) -> Settings:
        """These settings, signing with the development key when no KAIROS_SECRET_KEYS is
        set: one random key per machine, created in `dev_secret_file` on first use. The
        explicit step of every entry point that signs or verifies (server, `kairos`)."""
        if self.secret_keys or self.production:
            return self
        key = development_key(self.dev_secret_file)
        return dataclasses.replace(self, secret_keys=(Secret(key),), generated_secret=True)


def _check_production(settings: Settings, environ: Mapping[str, str]) -> None:
    """What production needs beyond valid values: real keys, https, an AMP allow-list."""
    if not settings.secret_keys:
        raise ConfigError(
            "KAIROS_SECRET_KEYS is required in production: "
            f"a comma list of random keys of at least {MIN_SECRET_LENGTH} characters"
        )
    for i, key in enumerate(settings.secret_keys):
        if len(key.reveal()) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"KAIROS_SECRET_KEYS entry {i + 1} is {len(key.reveal())} characters; "
                f"production needs at least {MIN_SECRET_LENGTH}"
            )
        weak = _weak(key.reveal())
        if weak:
            raise ConfigError(f"KAIROS_SECRET_KEYS entry {i + 1} {weak}: use random keys")
    if not settings.api_keys:
        raise ConfigError("KAIROS_API_KEYS is required in production")
    secrets = {k.reveal() for k in settings.secret_keys}
    for name, keys in (
        ("KAIROS_API_KEYS", settings.api_keys),
        ("KAIROS_WRITE_KEYS", settings.write_keys),
    ):
        if any(k.reveal() in secrets for k in keys):
            # Whoever holds that key could sign tokens for any reader.
            raise ConfigError(f"a {name} entry equals a signing key of KAIROS_SECRET_KEYS")
    short = [i + 1 for i, k in enumerate(settings.api_keys) if len(k.reveal()) < MIN_API_KEY_LENGTH]
    if short:
        raise ConfigError(
            f"KAIROS_API_KEYS entries {short} are shorter than {MIN_API_KEY_LENGTH} characters"
        )
    if urlsplit(settings.public_url).scheme != "https":
        raise ConfigError("KAIROS_PUBLIC_URL must be https in production")
    # Set, even to nothing (no sender allowed): production never assumes `*`.
    if "KAIROS_AMP_SENDERS" not in environ:
        raise ConfigError("KAIROS_AMP_SENDERS is required in production, e.g. '*@news.example.com'")
    for sender in settings.amp_senders:
        if "*" in sender.rpartition("@")[2] or "@" not in sender:
            raise ConfigError(
                f"KAIROS_AMP_SENDERS {sender!r} allows any domain: production names the "
                "sending domains, e.g. '*@news.example.com'"
            )


# Words of the keys in examples and templates, never of a random one.
PLACEHOLDERS = ("change", "secret", "example", "replace", "your-", "xxxx", "test", "demo")


def _weak(key: str) -> str:
    """Why `key` cannot be a production signing key ("" when it can): too few distinct
    characters, or a placeholder's words."""
    if len(set(key)) < MIN_DISTINCT_CHARACTERS:
        return f"has only {len(set(key))} distinct characters"
    lowered = key.lower()
    for word in PLACEHOLDERS:
        if word in lowered:
            return f"contains {word!r}, a placeholder's word"
    return ""
