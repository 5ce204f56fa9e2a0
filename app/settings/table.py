"""The settings table: one row per environment variable, the only place a setting's
parser, bounds, default and meaning are written. `Settings`, the README's configuration
table (kept equal by tests/test_docs.py) and /openapi.json all derive from it.

Over 300 lines because it is one table, a row per setting: split, it would no longer be
the one place to read them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.settings import parse
from app.settings.parse import Choice, Integer, Parser
from app.settings.smtp import smtp_url
from app.settings.values import MIN_API_KEY_LENGTH, MIN_SECRET_LENGTH

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Known:
    """What a computed default may depend on: the environment and the rows above it."""

    environ: Mapping[str, str]
    values: Mapping[str, Any]

    @property
    def production(self) -> bool:
        return bool(self.values["env"] == "production")

    def cache_home(self) -> Path:
        home = self.environ.get("HOME") or str(Path.home())
        return Path(self.environ.get("XDG_CACHE_HOME") or Path(home) / ".cache")


Default = str | Callable[[Known], str] | None


@dataclass(frozen=True)
class Setting:
    """One environment variable. `default` is written as the variable would be (its unit,
    its syntax) and goes through `parse` like a value that was set; None means the
    attribute is None when unset. `convert` turns the variable's unit into the
    attribute's (milliseconds into `cache_ttl_s`). `shown` is the README's wording of a
    default that is computed, empty or machine-specific. A blank variable counts as unset
    unless `blank_is_unset` is False."""

    var: str
    attr: str
    parse: Parser
    default: Default
    doc: str
    shown: str = ""
    convert: Callable[[Any], Any] | None = None
    blank_is_unset: bool = True

    def read(self, environ: Mapping[str, str], values: Mapping[str, Any]) -> Any:
        raw = environ.get(self.var)
        if raw is not None and (raw.strip() or not self.blank_is_unset):
            value = self.parse(self.var, raw.strip())
        else:
            default = self.default
            if callable(default):
                default = default(Known(environ, values))
            if default is None:
                return None
            value = self.parse(self.var, default)
        return value if self.convert is None else self.convert(value)

    @property
    def shown_default(self) -> str:
        return self.shown or f"`{self.default}`"


def _outside_production(known: Known) -> str:
    return "false" if known.production else "true"


def _demo_data(known: Known) -> str:
    return "false" if known.production or known.values["redis_url"] else "true"


def _image_workers(known: Known) -> str:
    return str(min(4, os.cpu_count() or 1))


def _cached(name: str) -> Callable[[Known], str]:
    return lambda known: str(known.cache_home() / name)


def _public_host(known: Known) -> str:
    return urlsplit(known.values["public_url"]).hostname or "localhost"


def _ms_to_s(ms: int) -> float:
    return ms / 1000


def _mb_to_bytes(mb: int) -> int:
    return mb * 1024 * 1024


def _kb_to_bytes(kb: int) -> int:
    return kb * 1024


def _h_to_s(hours: int) -> int:
    return hours * 3600


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "KAIROS_ENV", "env", Choice(("development", "production", "test")), "development",
        "`development`, `test` or `production`. Production refuses to start without "
        f"`KAIROS_SECRET_KEYS` (each ≥ {MIN_SECRET_LENGTH} characters), `KAIROS_API_KEYS` "
        f"(each ≥ {MIN_API_KEY_LENGTH}), `KAIROS_AMP_SENDERS` and an https "
        "`KAIROS_PUBLIC_URL`.",
    ),
    Setting(
        "KAIROS_SECRET_KEYS", "secret_keys", parse.secrets, "",
        "Comma list of signing keys: tokens are signed with the first and verified with all, "
        "so `new,old` rotates keys without breaking sent email.",
        shown="generated (development only)",
    ),
    Setting(
        "KAIROS_API_KEYS", "api_keys", parse.secrets, "",
        "Comma list of Bearer keys for server-to-server calls (`/v1/profiles/…`). Unset: "
        "those calls answer 401.", shown="none",
    ),
    Setting(
        "KAIROS_WRITE_KEYS", "write_keys", parse.secrets, "",
        "Comma list of write keys: they can only send events (`POST /v1/events` and the "
        "Segment dialect under `/segment`), so they may ship in a site's JavaScript. Any "
        "other route answers 403 to a write key.", shown="none",
    ),
    Setting(
        "REDIS_URL", "redis_url", parse.redis_url, None,
        "`redis://`, `rediss://` or `unix://` URL of the profile store; "
        "`redis+cluster://` (or `rediss+cluster://`) and one node for a Redis Cluster.",
        shown="unset: embedded store",
    ),
    Setting(
        "KAIROS_PUBLIC_URL", "public_url", parse.http_url, "http://127.0.0.1:8000",
        "Base of the signed URLs Kairos prints and embeds.",
    ),
    Setting(
        "KAIROS_MESSAGE_ID_DOMAIN", "message_id_domain", parse.domain, _public_host,
        "Domain of the `Message-ID` of rendered email (`<random@domain>`): your sending "
        "domain.",
        shown="the host of `KAIROS_PUBLIC_URL`",
    ),
    Setting(
        "KAIROS_SMTP_URL", "smtp_url", smtp_url, None,
        "SMTP server of the studio's \"Send a test\" (`POST /v1/preview/send`): "
        "`smtp://host:port`, `smtp+starttls://…` or `smtps://…`, with `user:password@` "
        "(percent-encoded) to log in and `?from=address` for the sender (default: "
        "`studio@` the domain of `KAIROS_MESSAGE_ID_DOMAIN`). A secret: never logged. "
        "Unset: tests are not sent (409).", shown="unset",
    ),
    # An allow-list set to nothing denies every sender: it must not fall back to `*`.
    Setting(
        "KAIROS_AMP_SENDERS", "amp_senders", parse.senders, "*",
        "Comma list of sender addresses allowed to load feeds from AMP email, e.g. "
        "`*@news.example.com,crm@example.com`. `*` stands for any characters but `@`.",
        shown="`*` (development only)", blank_is_unset=False,
    ),
    Setting(
        "KAIROS_BUDGET_MS", "budget_ms", Integer(1, 60_000), "150",
        "Time budget for a request's data. Past it the reader gets stale cache or the "
        "fallback.",
    ),
    Setting(
        "KAIROS_UPSTREAM_HOSTS", "upstream_hosts", parse.hosts, "",
        "The only hosts Kairos may call over HTTP (recommendation models, product images).",
        shown="none",
    ),
    Setting(
        "KAIROS_UPSTREAM_PRIVATE_HOSTS", "upstream_private_hosts", parse.hosts, "",
        "Hosts of `KAIROS_UPSTREAM_HOSTS` that may resolve to addresses off the public "
        "internet (an internal recommendation model). Any other name is refused when it "
        "resolves to a loopback, private, link-local or other non-public address, checked "
        "as each connection is made; an entry written as an IP address is reached as written.",
        shown="none",
    ),
    Setting(
        "KAIROS_RECS_COOCCURRENCE", "recs_cooccurrence", parse.boolean, "true",
        "Count which products readers view, cart and buy together (and what each primary "
        "segment views and buys), from every event ingested, for recommendations.",
    ),
    Setting(
        "KAIROS_RECS_NEIGHBOURS", "recs_neighbours", Integer(10, 10_000), "100",
        "Neighbours kept per product (those most often seen with it), and products kept "
        "per segment.",
    ),
    Setting(
        "KAIROS_RECS_URL", "recs_url", parse.http_url, None,
        "An upstream recommendation model, asked (POST, JSON) for each reader's ranking "
        "within the time budget; its host must be in `KAIROS_UPSTREAM_HOSTS`. Unset: "
        "in-house recommendations only.", shown="unset",
    ),
    Setting(
        "KAIROS_RECS_TIMEOUT_MS", "recs_timeout_s", Integer(1, 60_000), "80",
        "Longest wait for the upstream model (never past the request's budget); a slower "
        "answer is ignored.", convert=_ms_to_s,
    ),
    Setting(
        "KAIROS_CACHE_TTL_MS", "cache_ttl_s", Integer(0, 86_400_000), "5000",
        "How long a profile read stays in the in-process cache. `0` disables the cache. A "
        "write invalidates at once on every worker and host sharing the Redis (announced on "
        "the `kairos:changes` channel); if that announcement is lost, the change shows "
        "within this time. The catalog is cached for 60 s.", convert=_ms_to_s,
    ),
    Setting(
        "KAIROS_CACHE_SIZE", "cache_size", Integer(1, 10_000_000), "100000",
        "Readers kept in the in-process cache (and as many stale copies for outages).",
    ),
    Setting(
        "KAIROS_MAX_BODY_BYTES", "max_body_bytes", Integer(1024, 1024**3), "1048576",
        "Largest request body accepted; larger ones get 413.",
    ),
    Setting(
        "KAIROS_MAX_HEAD_BYTES", "max_head_bytes", Integer(1024, 1024**2), "32768",
        "Largest request line and headers together; a larger head gets 431 and the "
        "connection is closed (under `kairos serve`, or uvicorn with `--http "
        "app.protocol:KairosProtocol`).",
    ),
    Setting(
        "KAIROS_HEAD_TIMEOUT_MS", "head_timeout_s", Integer(100, 600_000), "10000",
        "Longest a client may take to send a request's line and headers; then the "
        "connection is closed.", convert=_ms_to_s,
    ),
    Setting(
        "KAIROS_BODY_TIMEOUT_MS", "body_timeout_s", Integer(100, 3_600_000), "60000",
        "Longest a client may take to send a request's body after its headers; then the "
        "connection is closed.", convert=_ms_to_s,
    ),
    Setting(
        "KAIROS_EVENTS_MAX_BODY_MB", "events_max_body_bytes", Integer(1, 256), "4",
        "Largest body of one events request (after gzip is undone); larger ones get 413 "
        "before anything is parsed.", convert=_mb_to_bytes,
    ),
    Setting(
        "KAIROS_EVENTS_MAX_COUNT", "events_max_count", Integer(1000, 100_000), "5000",
        "Most events one request may carry; more get 413.",
    ),
    Setting(
        "KAIROS_EVENT_MAX_KB", "event_max_bytes", Integer(1, 1024), "32",
        "Largest single event as JSON; a larger one is a `rejected` entry.",
        convert=_kb_to_bytes,
    ),
    Setting(
        "KAIROS_DEDUPE_WINDOW_H", "dedupe_window_s", Integer(1, 24 * 90), "24",
        "How long an event id is remembered: an event posted again within it is applied "
        "once and counted in `duplicates`.", convert=_h_to_s,
    ),
    Setting(
        "KAIROS_EVENTS_WARM_READERS", "events_warm_readers", Integer(0, 10_000_000), "20000",
        "Readers whose last profile written by events this process keeps (its stored JSON, "
        "~1-3 KB): their next events skip a store read, the write still refused if anyone "
        "changed the reader meanwhile. `0` reads before every write.",
    ),
    Setting(
        "KAIROS_EVENTS_IN_FLIGHT", "events_in_flight", Integer(1, 1_000_000), "300",
        "Events one process applies at once, over all its events requests (a request "
        "counts the event ids in its body before parsing it; one with more than this goes "
        "alone); the others wait their turn in arrival order, unparsed. A few 100-event "
        "requests at a time, each parsed just before it is applied, keep their data in the "
        "CPU's caches: sixteen interleaved cost each event 10-20 % more.",
    ),
    Setting(
        "KAIROS_EVENTS_WAIT_MS", "events_wait_s", Integer(1, 600_000), "5000",
        "Longest an events request waits for its turn (`KAIROS_EVENTS_IN_FLIGHT`); then "
        "503 `busy` with `Retry-After`, nothing applied.", convert=_ms_to_s,
    ),
    Setting(
        "KAIROS_HISTORY_EVENTS", "history_events", Integer(1, 1_000_000), "1000",
        "Events kept per reader (newest kept), for rules over time windows.",
    ),
    Setting(
        "KAIROS_HISTORY_DAYS", "history_days", Integer(1, 3650), "90",
        "Days an event is kept in its reader's history.",
    ),
    Setting(
        "KAIROS_EVENT_ORIGINS", "event_origins", parse.words, "*",
        "Comma list of web origins (`https://shop.example.com`) whose pages may post "
        "events from the browser (CORS); `*` allows any.",
    ),
    Setting(
        "KAIROS_RATE_API", "rate_api", Integer(0, 1_000_000), "10000",
        "Requests a second each API key may make to the server-to-server routes "
        "(render, render batch, profiles, previews, segments, campaigns), all together, "
        "with bursts of as many at once; over it, 429 with `Retry-After`. Shared by every "
        "process on one `REDIS_URL`. `0`: no limit.",
    ),
    Setting(
        "KAIROS_RATE_EVENTS", "rate_events", Integer(0, 1_000_000), "20000",
        "Requests a second each write key (or API key) may post to the events routes, "
        "both dialects together (a batch counts once), with bursts of as many at once; "
        "over it, 429 with `Retry-After`. Shared by every process on one `REDIS_URL`. "
        "`0`: no limit.",
    ),
    Setting(
        "KAIROS_REDIS_TIMEOUT_MS", "redis_timeout_ms", Integer(1, 60_000), "500",
        "Redis connect, socket and pool wait timeout.",
    ),
    Setting(
        "KAIROS_REDIS_POOL_SIZE", "redis_pool_size", Integer(1, 10_000), "64",
        "Redis connections per worker (on a Redis Cluster: to each node, with at most this many "
        "calls in flight at once; more wait their turn up to `KAIROS_REDIS_TIMEOUT_MS`).",
    ),
    Setting(
        "KAIROS_STORE_RETRY_MS", "store_retry_ms", Integer(0, 60_000), "500",
        "After a store failure, how long requests go straight to cache or fallback before "
        "the store is tried again.",
    ),
    Setting(
        "KAIROS_DEMO_DATA", "demo_data", parse.boolean, _demo_data,
        "Load the demo readers and catalog at start-up.",
        shown="on in development without `REDIS_URL`",
    ),
    Setting(
        "KAIROS_FALLBACKS_DIR", "fallbacks_dir", parse.folder, str(PROJECT_ROOT / "fallbacks"),
        "Where the fallback content lives.", shown="`fallbacks/` of the checkout",
    ),
    Setting(
        "KAIROS_BLOCKS_DIR", "blocks_dir", parse.folder, str(PROJECT_ROOT / "blocks"),
        "Where the designers' blocks live.", shown="`blocks/` of the checkout",
    ),
    Setting(
        "KAIROS_TEMPLATES_DIR", "templates_dir", parse.folder, str(PROJECT_ROOT / "templates"),
        "Where the templates live.", shown="`templates/` of the checkout",
    ),
    Setting(
        "KAIROS_SEGMENTS_FILE", "segments_file", parse.path,
        str(PROJECT_ROOT / "templates" / "segments.toml"),
        "The segment rules (TOML): which segments a reader is in, evaluated on each event "
        "and at read time from the reader's kept events. A bad file stops the server at "
        "start-up with the rule and line; edited while it runs, it is reloaded within a "
        "second, and a bad edit is logged (rule and line) while the last good rules stay.",
        shown="`templates/segments.toml` of the checkout",
    ),
    Setting(
        "KAIROS_SEGMENTS_SWEEP_S", "segments_sweep_s", Integer(0, 3600), "10",
        "How often this process looks for readers whose segments change with time alone "
        "(a cart idle 15 minutes): each is found within this many seconds of its due time. "
        "`0`: not in this process (run `kairos worker` instead).",
    ),
    Setting(
        "KAIROS_SEGMENTS_STREAM_MAX", "segments_stream_max", Integer(1000, 100_000_000),
        "100000",
        "Segment entries and exits kept in the changes stream (the oldest dropped first).",
    ),
    Setting(
        "KAIROS_RELOAD_TEMPLATES", "reload_templates", parse.boolean, _outside_production,
        "Recompile the templates when their files change (checked at most once a second, in "
        "the background: the last version serves until the new one is ready).",
        shown="on, except in production",
    ),
    Setting(
        "KAIROS_DESIGNER", "designer", parse.boolean, _outside_production,
        "The designer's studio at `/designer` (`on` / `off`). Off: every `/designer` path "
        "answers 404. In development and test a browser on loopback needs no login; "
        "otherwise the page asks for one of `KAIROS_API_KEYS` and keeps a signed session "
        "cookie for 8 hours.",
        shown="on, except in production",
    ),
    Setting(
        "KAIROS_CATALOG_ASSETS_DIR", "catalog_assets_dir", parse.folder, None,
        "Folder of local product images: a catalog product's `image` names a file in it "
        "(`lamp.jpg`), used by live product cards before its `image_url`.", shown="unset",
    ),
    Setting(
        "KAIROS_IMAGE_CACHE_MB", "image_cache_bytes", Integer(1, 65_536), "64",
        "Size of the in-process cache of rendered live images (least recently used out "
        "first).", convert=_mb_to_bytes,
    ),
    Setting(
        "KAIROS_IMAGE_WORKERS", "image_workers", Integer(1, 64), _image_workers,
        "Threads that draw live images (Pillow), so drawing never stalls the event loop.",
        shown="CPU cores, at most 4",
    ),
    Setting(
        "KAIROS_IMAGE_MAX_BYTES", "image_max_bytes", Integer(1024, 1024**3), "5242880",
        "Largest source image (upstream or local) a live image will load; bigger ones get "
        "the fallback.",
    ),
    Setting(
        "KAIROS_LOG_LEVEL", "log_level", Choice(("DEBUG", "INFO", "WARNING", "ERROR")), "INFO",
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`.",
    ),
    Setting(
        "KAIROS_DEV_SECRET_FILE", "dev_secret_file", parse.path, _cached("kairos/dev-secret"),
        "Where development keeps its generated signing key (mode 0600), shared by the "
        "server's workers and `kairos sign`.",
        shown="`kairos/dev-secret` in `$XDG_CACHE_HOME`, else in `~/.cache`",
    ),
    Setting(
        "HOST", "host", parse.text, "127.0.0.1",
        "Address `kairos serve` listens on (`--host` overrides it).",
    ),
    Setting(
        "PORT", "port", Integer(0, 65_535), "8000",
        "Port `kairos serve` listens on (`--port` overrides it).",
    ),
    Setting(
        "WEB_CONCURRENCY", "workers", Integer(1, 1024), "1",
        "Worker processes of `kairos serve` (`--workers` overrides it); more than one needs "
        "`REDIS_URL`.",
    ),
    Setting(
        "KAIROS_METRICS_DIR", "metrics_dir", parse.folder, None,
        "Folder where each worker process writes its metrics so that `GET /metrics` on any "
        "of them answers for all (Prometheus multiprocess files). `kairos serve --workers N` "
        "sets it to a private folder of its own, made at start and removed at exit; set it "
        "only when another supervisor runs the workers, to an empty folder each start.",
        shown="unset (one process: its own numbers)",
    ),
    Setting(
        "KAIROS_API_KEY", "client_api_key", parse.secret, None,
        "The key `kairos import profiles FILE --server URL` sends: one of the server's "
        "`KAIROS_API_KEYS`.", shown="unset",
    ),
    Setting(
        "KAIROS_AMP_VALIDATOR_DIR", "amp_validator_dir", parse.path, _cached("kairos-ampval"),
        "Where `.ci/amp-validator` installs the official AMP validator that `kairos check` "
        "and the tests run.", shown="`kairos-ampval` in `$XDG_CACHE_HOME`, else in `~/.cache`",
    ),
)  # fmt: skip


def describe(setting: Setting) -> dict[str, Any]:
    """A setting's documentation, for /openapi.json: no value, only what the table says."""
    entry: dict[str, Any] = {
        "name": setting.var,
        "default": setting.shown_default,
        "description": setting.doc,
    }
    if isinstance(setting.parse, Integer):
        entry["minimum"], entry["maximum"] = setting.parse.lo, setting.parse.hi
    if isinstance(setting.parse, Choice):
        entry["enum"] = list(setting.parse.options)
    return entry
