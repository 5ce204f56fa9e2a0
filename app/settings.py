"""Settings: read once from the environment, validated at start-up, immutable after."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("kairos.settings")

MIN_SECRET_LENGTH = 32
MIN_API_KEY_LENGTH = 16
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


class Secret:
    """A string that never shows itself in `repr` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. Build with `Settings.from_env()`."""

    env: str = "development"
    secret_keys: tuple[Secret, ...] = ()
    api_keys: tuple[Secret, ...] = ()
    redis_url: Secret | None = None
    public_url: str = "http://127.0.0.1:8000"
    amp_senders: tuple[str, ...] = ("*",)
    budget_ms: int = 150
    upstream_hosts: tuple[str, ...] = ()
    cache_ttl_s: float = 5.0
    cache_size: int = 100_000
    max_body_bytes: int = 1024 * 1024
    redis_timeout_ms: int = 500
    redis_pool_size: int = 64
    store_retry_ms: int = 500
    demo_data: bool = True
    fallbacks_dir: Path = PROJECT_ROOT / "fallbacks"
    blocks_dir: Path = PROJECT_ROOT / "blocks"
    templates_dir: Path = PROJECT_ROOT / "templates"
    reload_templates: bool = True
    catalog_assets_dir: Path | None = None
    image_cache_bytes: int = 64 * 1024 * 1024
    image_workers: int = 2
    image_max_bytes: int = 5 * 1024 * 1024
    log_level: str = "INFO"
    generated_secret: bool = field(default=False, compare=False)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def budget_s(self) -> float:
        return self.budget_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build and validate settings from `environ` (default: `os.environ`)."""
        e = dict(os.environ if environ is None else environ)
        env = e.get("KAIROS_ENV", "development").strip().lower()
        if env not in ("development", "production", "test"):
            raise ConfigError(f"KAIROS_ENV must be development, production or test, not {env!r}")
        production = env == "production"

        keys = _csv(e.get("KAIROS_SECRET_KEYS", ""))
        generated = False
        if not keys:
            if production:
                raise ConfigError(
                    "KAIROS_SECRET_KEYS is required in production: "
                    f"a comma list of random keys of at least {MIN_SECRET_LENGTH} characters"
                )
            keys = [_development_secret(e)]
            generated = True
        for i, key in enumerate(keys):
            if production and len(key) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"KAIROS_SECRET_KEYS entry {i + 1} is {len(key)} characters; "
                    f"production needs at least {MIN_SECRET_LENGTH}"
                )

        api_keys = _csv(e.get("KAIROS_API_KEYS", ""))
        if production:
            if not api_keys:
                raise ConfigError("KAIROS_API_KEYS is required in production")
            short = [i + 1 for i, k in enumerate(api_keys) if len(k) < MIN_API_KEY_LENGTH]
            if short:
                raise ConfigError(
                    f"KAIROS_API_KEYS entries {short} are shorter than {MIN_API_KEY_LENGTH} "
                    "characters"
                )

        redis_url = e.get("REDIS_URL", "").strip() or None
        if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")

        public_url = e.get("KAIROS_PUBLIC_URL", "http://127.0.0.1:8000").strip().rstrip("/")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("KAIROS_PUBLIC_URL must be an absolute http(s) URL")
        if production and parts.scheme != "https":
            raise ConfigError("KAIROS_PUBLIC_URL must be https in production")

        senders_raw = e.get("KAIROS_AMP_SENDERS")
        if senders_raw is None:
            if production:
                raise ConfigError(
                    "KAIROS_AMP_SENDERS is required in production, e.g. '*@news.example.com'"
                )
            senders = ["*"]
        else:
            senders = [s.lower() for s in _csv(senders_raw)]
        for s in senders:
            if s != "*" and "@" not in s:
                raise ConfigError(
                    f"KAIROS_AMP_SENDERS entry {s!r} is not an address pattern "
                    "like 'news@example.com' or '*@example.com'"
                )

        fallbacks_dir = Path(e.get("KAIROS_FALLBACKS_DIR", str(PROJECT_ROOT / "fallbacks")))
        if not fallbacks_dir.is_dir():
            raise ConfigError(f"KAIROS_FALLBACKS_DIR {str(fallbacks_dir)!r} is not a directory")

        folders = {}
        for name, var in (("blocks", "KAIROS_BLOCKS_DIR"), ("templates", "KAIROS_TEMPLATES_DIR")):
            folder = Path(e.get(var, str(PROJECT_ROOT / name)))
            if not folder.is_dir():
                raise ConfigError(f"{var} {str(folder)!r} is not a directory")
            folders[name] = folder

        assets_raw = e.get("KAIROS_CATALOG_ASSETS_DIR", "").strip()
        catalog_assets = Path(assets_raw) if assets_raw else None
        if catalog_assets is not None and not catalog_assets.is_dir():
            raise ConfigError(f"KAIROS_CATALOG_ASSETS_DIR {assets_raw!r} is not a directory")

        log_level = e.get("KAIROS_LOG_LEVEL", "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("KAIROS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

        settings = cls(
            env=env,
            secret_keys=tuple(Secret(k) for k in keys),
            api_keys=tuple(Secret(k) for k in api_keys),
            redis_url=Secret(redis_url) if redis_url else None,
            public_url=public_url,
            amp_senders=tuple(senders),
            budget_ms=_int(e, "KAIROS_BUDGET_MS", 150, 1, 60_000),
            upstream_hosts=tuple(h.lower() for h in _csv(e.get("KAIROS_UPSTREAM_HOSTS", ""))),
            cache_ttl_s=_int(e, "KAIROS_CACHE_TTL_MS", 5_000, 0, 86_400_000) / 1000,
            cache_size=_int(e, "KAIROS_CACHE_SIZE", 100_000, 1, 10_000_000),
            max_body_bytes=_int(e, "KAIROS_MAX_BODY_BYTES", 1024 * 1024, 1024, 1024**3),
            redis_timeout_ms=_int(e, "KAIROS_REDIS_TIMEOUT_MS", 500, 1, 60_000),
            redis_pool_size=_int(e, "KAIROS_REDIS_POOL_SIZE", 64, 1, 10_000),
            store_retry_ms=_int(e, "KAIROS_STORE_RETRY_MS", 500, 0, 60_000),
            demo_data=_bool(e, "KAIROS_DEMO_DATA", default=not production and not redis_url),
            fallbacks_dir=fallbacks_dir,
            blocks_dir=folders["blocks"],
            templates_dir=folders["templates"],
            reload_templates=_bool(e, "KAIROS_RELOAD_TEMPLATES", default=not production),
            catalog_assets_dir=catalog_assets,
            image_cache_bytes=_int(e, "KAIROS_IMAGE_CACHE_MB", 64, 1, 65_536) * 1024 * 1024,
            image_workers=_int(e, "KAIROS_IMAGE_WORKERS", min(4, os.cpu_count() or 1), 1, 64),
            image_max_bytes=_int(e, "KAIROS_IMAGE_MAX_BYTES", 5 * 1024 * 1024, 1024, 1024**3),
            log_level=log_level,
            generated_secret=generated,
        )
        return settings


# Settings documented in the README's config table; tests keep the two in step.
ENV_VARS = (
    "KAIROS_ENV",
    "KAIROS_SECRET_KEYS",
    "KAIROS_API_KEYS",
    "REDIS_URL",
    "KAIROS_PUBLIC_URL",
    "KAIROS_AMP_SENDERS",
    "KAIROS_BUDGET_MS",
    "KAIROS_UPSTREAM_HOSTS",
    "KAIROS_CACHE_TTL_MS",
    "KAIROS_CACHE_SIZE",
    "KAIROS_MAX_BODY_BYTES",
    "KAIROS_REDIS_TIMEOUT_MS",
    "KAIROS_REDIS_POOL_SIZE",
    "KAIROS_STORE_RETRY_MS",
    "KAIROS_DEMO_DATA",
    "KAIROS_FALLBACKS_DIR",
    "KAIROS_BLOCKS_DIR",
    "KAIROS_TEMPLATES_DIR",
    "KAIROS_RELOAD_TEMPLATES",
    "KAIROS_CATALOG_ASSETS_DIR",
    "KAIROS_IMAGE_CACHE_MB",
    "KAIROS_IMAGE_WORKERS",
    "KAIROS_IMAGE_MAX_BYTES",
    "KAIROS_LOG_LEVEL",
    "KAIROS_DEV_SECRET_FILE",
)


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _int(e: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = e.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"-?\d+", raw):
        raise ConfigError(f"{name} must be an integer, not {raw!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _bool(e: Mapping[str, str], name: str, default: bool) -> bool:
    raw = e.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _development_secret(e: Mapping[str, str]) -> str:
    """A random key kept in a private file, so the server's workers and `kairos sign`
    on this machine agree. Never used in production."""
    default = Path(e.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kairos" / "dev-secret"
    path = Path(e.get("KAIROS_DEV_SECRET_FILE") or default)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.parent.is_dir():
            return _read_development_secret(path)
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


def _read_development_secret(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the development key file {path}: {exc}") from None
    if len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"development key file {path} is damaged: delete it")
    return key
