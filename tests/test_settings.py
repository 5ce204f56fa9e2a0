"""Settings: built from the environment, validated at start-up, immutable."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from support import API_KEY, SECRET

from app.settings import (
    ENV_VARS,
    MIN_SECRET_LENGTH,
    SETTINGS,
    ConfigError,
    Secret,
    Setting,
    Settings,
)
from app.settings.parse import Integer
from app.settings.table import Known

# A random key as production wants one (the tests' SECRET says it is a test's).
PRODUCTION_SECRET = "q7Lm2Vx9Rt4Kp8Nw3Zb6Hc1Jd5Fg0Ys2Ea"
PRODUCTION_OK = {
    "KAIROS_ENV": "production",
    "KAIROS_SECRET_KEYS": PRODUCTION_SECRET,
    "KAIROS_API_KEYS": API_KEY,
    "KAIROS_PUBLIC_URL": "https://kairos.example.com",
    "KAIROS_AMP_SENDERS": "*@news.example.com",
}


def production(**changes: str | None) -> dict[str, str]:
    env = dict(PRODUCTION_OK)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# --- production refuses to start without safe secrets ----------------------------------


def test_production_with_complete_config_starts():
    s = Settings.from_env(PRODUCTION_OK)
    assert s.production
    assert s.env == "production"
    assert [k.reveal() for k in s.secret_keys] == [PRODUCTION_SECRET]
    assert s.generated_secret is False
    assert s.demo_data is False
    assert s.amp_senders == ("*@news.example.com",)


def test_production_refuses_without_secret_keys(tmp_path: Path):
    env = production(KAIROS_SECRET_KEYS=None)
    env["KAIROS_DEV_SECRET_FILE"] = str(tmp_path / "dev-secret")
    with pytest.raises(ConfigError, match=r"KAIROS_SECRET_KEYS is required in production"):
        Settings.from_env(env)
    # and it did not quietly fall back to a generated development key
    assert not (tmp_path / "dev-secret").exists()


def test_production_refuses_blank_secret_keys():
    with pytest.raises(ConfigError, match="KAIROS_SECRET_KEYS is required"):
        Settings.from_env(production(KAIROS_SECRET_KEYS=" , "))


def test_production_refuses_short_secret_key():
    short = "x" * (MIN_SECRET_LENGTH - 1)
    with pytest.raises(ConfigError) as info:
        Settings.from_env(production(KAIROS_SECRET_KEYS=short))
    message = str(info.value)
    assert "KAIROS_SECRET_KEYS entry 1" in message
    assert f"{MIN_SECRET_LENGTH - 1} characters" in message
    assert f"at least {MIN_SECRET_LENGTH}" in message
    assert short not in message  # the error names the problem, not the secret


def test_production_refuses_short_second_key_and_names_it():
    with pytest.raises(ConfigError, match="entry 2 is 5 characters"):
        Settings.from_env(production(KAIROS_SECRET_KEYS=f"{PRODUCTION_SECRET},short"))


def test_production_accepts_key_of_exactly_minimum_length():
    key = (PRODUCTION_SECRET * 2)[:MIN_SECRET_LENGTH]
    assert Settings.from_env(production(KAIROS_SECRET_KEYS=key)).secret_keys == (Secret(key),)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"KAIROS_API_KEYS": None}, "KAIROS_API_KEYS is required in production"),
        ({"KAIROS_API_KEYS": f"{API_KEY},short"}, r"KAIROS_API_KEYS entries \[2\] are shorter"),
        ({"KAIROS_PUBLIC_URL": "http://kairos.example.com"}, "must be https in production"),
        ({"KAIROS_AMP_SENDERS": None}, "KAIROS_AMP_SENDERS is required in production"),
    ],
)
def test_production_other_requirements(changes: dict[str, str | None], expected: str):
    with pytest.raises(ConfigError, match=expected):
        Settings.from_env(production(**changes))


def test_short_keys_are_allowed_outside_production(tmp_path: Path):
    s = Settings.from_env({"KAIROS_ENV": "test", "KAIROS_SECRET_KEYS": "short"})
    assert s.secret_keys == (Secret("short"),)
    assert s.generated_secret is False


# --- development key ---------------------------------------------------------------------


def test_development_generates_a_private_key_file_and_reuses_it(tmp_path: Path):
    key_file = tmp_path / "sub" / "dev-secret"
    env = {"KAIROS_ENV": "development", "KAIROS_DEV_SECRET_FILE": str(key_file)}

    assert not key_file.exists()  # reading settings writes nothing
    first = Settings.from_env(env).with_development_key()
    assert first.generated_secret is True
    assert len(first.secret_keys) == 1
    key = first.secret_keys[0].reveal()
    assert len(key) >= MIN_SECRET_LENGTH

    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    second = Settings.from_env(env).with_development_key()
    assert second.generated_secret is True
    assert second.secret_keys[0].reveal() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_development_key_files_differ_per_file(tmp_path: Path):
    a = Settings.from_env({"KAIROS_DEV_SECRET_FILE": str(tmp_path / "a")}).with_development_key()
    b = Settings.from_env({"KAIROS_DEV_SECRET_FILE": str(tmp_path / "b")}).with_development_key()
    assert a.secret_keys != b.secret_keys


def test_development_key_file_defaults_under_xdg_cache_home(tmp_path: Path):
    s = Settings.from_env({"XDG_CACHE_HOME": str(tmp_path)}).with_development_key()
    assert (tmp_path / "kairos" / "dev-secret").read_text().strip() == s.secret_keys[0].reveal()


def test_damaged_development_key_file_is_a_config_error(tmp_path: Path):
    key_file = tmp_path / "dev-secret"
    key_file.write_text("too-short\n")
    with pytest.raises(ConfigError, match="is damaged: delete it"):
        Settings.from_env({"KAIROS_DEV_SECRET_FILE": str(key_file)}).with_development_key()


@pytest.mark.parametrize("below", ["dev-secret", "sub/dev-secret"])
def test_development_key_file_in_unusable_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, below: str
):
    # Regression: when the key file's parent was a regular file, mkdir's FileExistsError
    # was taken for the O_EXCL one, and read_text() then raised NotADirectoryError,
    # uncaught. Like any other unwritable location, it now means a per-process key.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    env = {"KAIROS_DEV_SECRET_FILE": str(blocker / below)}

    with caplog.at_level("WARNING", logger="kairos.settings"):
        first = Settings.from_env(env).with_development_key()
    assert first.generated_secret is True
    key = first.secret_keys[0].reveal()
    assert len(key) >= MIN_SECRET_LENGTH
    assert "using a key for this process only" in caplog.text
    assert blocker.read_text() == "a file where a directory should be"  # untouched
    # nothing was kept: another process (or call) gets another key
    assert Settings.from_env(env).with_development_key().secret_keys[0].reveal() != key


def test_development_key_file_that_cannot_be_read_is_a_config_error(tmp_path: Path):
    key_file = tmp_path / "dev-secret"
    key_file.mkdir()  # exists, but reading it fails (whoever runs the tests, root too)
    with pytest.raises(ConfigError, match="cannot read the development key file"):
        Settings.from_env({"KAIROS_DEV_SECRET_FILE": str(key_file)}).with_development_key()


def test_explicit_keys_do_not_touch_the_development_file(tmp_path: Path):
    key_file = tmp_path / "dev-secret"
    env = {"KAIROS_SECRET_KEYS": SECRET, "KAIROS_DEV_SECRET_FILE": str(key_file)}
    s = Settings.from_env(env).with_development_key()
    assert s.generated_secret is False
    assert s.secret_keys == (Secret(SECRET),)
    assert not key_file.exists()


# --- parsing and validation --------------------------------------------------------------


def test_secret_keys_are_a_comma_list_in_order(settings):
    s = settings(KAIROS_SECRET_KEYS=" new-key , old-key ,, ")
    assert [k.reveal() for k in s.secret_keys] == ["new-key", "old-key"]


def test_defaults(settings):
    s = settings()
    assert s.env == "test"
    assert s.budget_ms == 150
    assert s.budget_s == pytest.approx(0.15)
    assert s.cache_ttl_s == pytest.approx(5.0)
    assert s.max_body_bytes == 1024 * 1024
    assert s.amp_senders == ("*",)
    assert s.redis_url is None
    assert s.demo_data is True
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.catalog_assets_dir is None
    assert s.image_cache_bytes == 64 * 1024 * 1024
    assert 1 <= s.image_workers <= 4
    assert s.image_max_bytes == 5 * 1024 * 1024
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.client_api_key is None


def test_serve_and_client_values_are_read(settings, tmp_path):
    s = settings(
        HOST="10.0.0.5",
        PORT="9000",
        WEB_CONCURRENCY="4",
        KAIROS_API_KEY=" client-key ",
        KAIROS_AMP_VALIDATOR_DIR=tmp_path / "ampval",  # need not exist yet
    )
    assert (s.host, s.port, s.workers) == ("10.0.0.5", 9000, 4)
    assert s.client_api_key == Secret("client-key")
    assert s.amp_validator_dir == tmp_path / "ampval"


def test_cache_folders_default_under_xdg_cache_home_else_home(tmp_path):
    xdg = Settings.from_env({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)})
    assert xdg.dev_secret_file == tmp_path / "xdg" / "kairos" / "dev-secret"
    assert xdg.amp_validator_dir == tmp_path / "xdg" / "kairos-ampval"
    home = Settings.from_env({"HOME": str(tmp_path)})
    assert home.dev_secret_file == tmp_path / ".cache" / "kairos" / "dev-secret"
    assert home.amp_validator_dir == tmp_path / ".cache" / "kairos-ampval"


def test_a_blank_variable_is_an_unset_one(settings):
    s = settings(KAIROS_BUDGET_MS=" ", KAIROS_LOG_LEVEL="", KAIROS_DEMO_DATA="", PORT="")
    assert (s.budget_ms, s.log_level, s.demo_data, s.port) == (150, "INFO", True, 8000)


def test_an_empty_amp_allow_list_denies_every_sender(settings):
    # Not the development default `*`: set to nothing, the allow-list allows nothing.
    assert settings(KAIROS_AMP_SENDERS="").amp_senders == ()
    assert settings(KAIROS_AMP_SENDERS=" , ").amp_senders == ()
    assert Settings.from_env(production(KAIROS_AMP_SENDERS="")).amp_senders == ()


def test_image_values_are_read(settings, tmp_path):
    s = settings(
        KAIROS_CATALOG_ASSETS_DIR=tmp_path,
        KAIROS_IMAGE_CACHE_MB="8",
        KAIROS_IMAGE_WORKERS="3",
        KAIROS_IMAGE_MAX_BYTES="65536",
    )
    assert s.catalog_assets_dir == tmp_path
    assert (s.image_cache_bytes, s.image_workers, s.image_max_bytes) == (8 << 20, 3, 65536)


def test_values_are_read(settings):
    s = settings(
        KAIROS_BUDGET_MS="75",
        KAIROS_CACHE_TTL_MS="250",
        KAIROS_CACHE_SIZE="10",
        KAIROS_MAX_BODY_BYTES="4096",
        KAIROS_STORE_RETRY_MS="0",
        KAIROS_PUBLIC_URL="https://mail.example.com/",
        KAIROS_AMP_SENDERS="News@Example.com, *@promo.example.com",
        KAIROS_UPSTREAM_HOSTS="Recs.Example.com",
        REDIS_URL="redis://:pw@localhost:6379/2",
        KAIROS_LOG_LEVEL="debug",
    )
    assert s.budget_ms == 75
    assert s.cache_ttl_s == pytest.approx(0.25)
    assert s.cache_size == 10
    assert s.max_body_bytes == 4096
    assert s.store_retry_ms == 0
    assert s.public_url == "https://mail.example.com"
    assert s.amp_senders == ("news@example.com", "*@promo.example.com")
    assert s.upstream_hosts == ("recs.example.com",)
    assert s.redis_url == Secret("redis://:pw@localhost:6379/2")
    assert s.demo_data is False  # redis configured: no demo data by default
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KAIROS_BUDGET_MS", "abc", "KAIROS_BUDGET_MS must be an integer, not 'abc'"),
        ("KAIROS_BUDGET_MS", "1.5", "KAIROS_BUDGET_MS must be an integer"),
        ("KAIROS_BUDGET_MS", "0", "KAIROS_BUDGET_MS must be between 1 and 60000, not 0"),
        ("KAIROS_BUDGET_MS", "60001", "KAIROS_BUDGET_MS must be between"),
        ("KAIROS_CACHE_TTL_MS", "-1", "KAIROS_CACHE_TTL_MS must be between 0"),
        ("KAIROS_CACHE_SIZE", "0", "KAIROS_CACHE_SIZE must be between 1"),
        ("KAIROS_MAX_BODY_BYTES", "100", "KAIROS_MAX_BODY_BYTES must be between 1024"),
        ("KAIROS_REDIS_TIMEOUT_MS", "10ms", "KAIROS_REDIS_TIMEOUT_MS must be an integer"),
        ("KAIROS_REDIS_POOL_SIZE", "0x10", "KAIROS_REDIS_POOL_SIZE must be an integer"),
        ("KAIROS_STORE_RETRY_MS", "-5", "KAIROS_STORE_RETRY_MS must be between 0"),
        ("KAIROS_IMAGE_CACHE_MB", "0", "KAIROS_IMAGE_CACHE_MB must be between 1"),
        ("KAIROS_IMAGE_WORKERS", "65", "KAIROS_IMAGE_WORKERS must be between 1 and 64"),
        ("KAIROS_IMAGE_MAX_BYTES", "5MB", "KAIROS_IMAGE_MAX_BYTES must be an integer"),
    ],
)
def test_bad_integers_are_rejected(settings, name: str, value: str, expected: str):
    with pytest.raises(ConfigError, match=expected):
        settings(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KAIROS_ENV", "staging", "KAIROS_ENV must be development, production or test"),
        ("KAIROS_DEMO_DATA", "maybe", "KAIROS_DEMO_DATA must be true or false"),
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL must start with redis://"),
        ("KAIROS_PUBLIC_URL", "kairos.example.com", "KAIROS_PUBLIC_URL must be an absolute"),
        ("KAIROS_PUBLIC_URL", "ftp://kairos.example.com", "KAIROS_PUBLIC_URL must be an absolute"),
        ("KAIROS_AMP_SENDERS", "news.example.com", "is not an address pattern"),
        ("KAIROS_LOG_LEVEL", "loud", "KAIROS_LOG_LEVEL must be"),
        ("KAIROS_FALLBACKS_DIR", "/nonexistent/fallbacks", "is not a directory"),
        ("KAIROS_CATALOG_ASSETS_DIR", "/nonexistent/assets", "is not a directory"),
    ],
)
def test_bad_values_are_rejected(settings, name: str, value: str, expected: str):
    with pytest.raises(ConfigError, match=expected):
        settings(**{name: value})


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("ON", True), ("0", False)])
def test_booleans(settings, raw: str, expected: bool):
    assert settings(KAIROS_DEMO_DATA=raw).demo_data is expected


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_from_env_reads_os_environ_by_default(clean_environ, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KAIROS_BUDGET_MS", "42")
    assert Settings.from_env().budget_ms == 42
    assert os.environ["KAIROS_BUDGET_MS"] == "42"


# --- one table ---------------------------------------------------------------------------

# Set by `with_development_key`, not read from a variable.
DERIVED = {"generated_secret"}


def test_every_field_comes_from_a_row_of_the_table_or_is_derived():
    attrs = [row.attr for row in SETTINGS]
    assert len(set(attrs)) == len(attrs), "two rows fill the same attribute"
    assert len(set(ENV_VARS)) == len(ENV_VARS), "two rows read the same variable"
    assert ENV_VARS == tuple(row.var for row in SETTINGS)
    assert {f.name for f in dataclasses.fields(Settings)} == set(attrs) | DERIVED


def _has_type(value: object, hint: object) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return isinstance(value, tuple) and all(_has_type(v, args[0]) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    assert isinstance(hint, type)
    return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"REDIS_URL": "redis://localhost", "KAIROS_API_KEY": "k", "KAIROS_CATALOG_ASSETS_DIR": "."},
    ],
)
def test_every_row_gives_its_field_the_declared_type(settings, changes: dict[str, str]):
    # mypy checks the uses of Settings against its annotations; this checks the rows.
    s = settings(**changes)
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        assert _has_type(value, hints[f.name]), f"{f.name} = {value!r} is not {hints[f.name]}"


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.default], ids=lambda r: r.var)
def test_a_default_is_written_as_the_variable_would_be(row: Setting):
    # Setting a variable to its table default changes nothing: one unit, one syntax.
    unset = Settings.from_env({})
    default = row.default(Known({}, vars(unset))) if callable(row.default) else row.default
    assert isinstance(default, str)
    assert Settings.from_env({row.var: default}) == unset


def test_a_default_that_is_not_a_plain_value_says_how_it_is_shown():
    for row in SETTINGS:
        plain = isinstance(row.default, str) and row.default and not row.attr.endswith("_dir")
        assert plain or row.shown, f"{row.var}: say in `shown` what the README calls its default"


# The integer rows' defaults and bounds as they were before the table; a new integer row
# must be added here.
INTEGERS = {
    "KAIROS_BUDGET_MS": ("150", 1, 60_000),
    "KAIROS_RECS_NEIGHBOURS": ("100", 10, 10_000),
    "KAIROS_RECS_TIMEOUT_MS": ("80", 1, 60_000),
    "KAIROS_CACHE_TTL_MS": ("5000", 0, 86_400_000),
    "KAIROS_CACHE_SIZE": ("100000", 1, 10_000_000),
    "KAIROS_MAX_BODY_BYTES": ("1048576", 1024, 1024**3),
    "KAIROS_MAX_HEAD_BYTES": ("32768", 1024, 1024**2),
    "KAIROS_HEAD_TIMEOUT_MS": ("10000", 100, 600_000),
    "KAIROS_BODY_TIMEOUT_MS": ("60000", 100, 3_600_000),
    "KAIROS_RATE_API": ("10000", 0, 1_000_000),
    "KAIROS_RATE_EVENTS": ("20000", 0, 1_000_000),
    "KAIROS_REDIS_TIMEOUT_MS": ("500", 1, 60_000),
    "KAIROS_REDIS_POOL_SIZE": ("64", 1, 10_000),
    "KAIROS_STORE_RETRY_MS": ("500", 0, 60_000),
    "KAIROS_IMAGE_CACHE_MB": ("64", 1, 65_536),
    "KAIROS_IMAGE_WORKERS": (None, 1, 64),  # computed: CPU cores, at most 4
    "KAIROS_IMAGE_MAX_BYTES": ("5242880", 1024, 1024**3),
    "PORT": ("8000", 0, 65_535),
    "WEB_CONCURRENCY": ("1", 1, 1024),
    "KAIROS_EVENTS_MAX_BODY_MB": ("4", 1, 256),
    "KAIROS_EVENTS_MAX_COUNT": ("5000", 1000, 100_000),
    "KAIROS_EVENT_MAX_KB": ("32", 1, 1024),
    "KAIROS_DEDUPE_WINDOW_H": ("24", 1, 24 * 90),
    "KAIROS_EVENTS_WARM_READERS": ("20000", 0, 10_000_000),
    "KAIROS_EVENTS_IN_FLIGHT": ("300", 1, 1_000_000),
    "KAIROS_EVENTS_WAIT_MS": ("5000", 1, 600_000),
    "KAIROS_HISTORY_EVENTS": ("1000", 1, 1_000_000),
    "KAIROS_HISTORY_DAYS": ("90", 1, 3650),
    "KAIROS_SEGMENTS_SWEEP_S": ("10", 0, 3600),
    "KAIROS_SEGMENTS_STREAM_MAX": ("100000", 1000, 100_000_000),
}


def test_every_integer_row_is_pinned():
    assert {row.var for row in SETTINGS if isinstance(row.parse, Integer)} == set(INTEGERS)


@pytest.mark.parametrize("var", INTEGERS)
def test_integer_defaults_and_bounds(settings, var: str):
    default, lo, hi = INTEGERS[var]
    row = next(row for row in SETTINGS if row.var == var)
    if default is not None:
        assert row.default == default
    for edge in (lo, hi):
        settings(**{var: str(edge)})
    for outside in (lo - 1, hi + 1):
        with pytest.raises(ConfigError, match=rf"^{var} must be between {lo} and {hi}, not "):
            settings(**{var: str(outside)})


def test_from_env_writes_nothing(clean_environ, monkeypatch: pytest.MonkeyPatch, tmp_path):
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("KAIROS_SECRET_KEYS")
    monkeypatch.delenv("KAIROS_DEV_SECRET_FILE")
    monkeypatch.setenv("KAIROS_ENV", "development")

    s = Settings.from_env()
    assert (s.secret_keys, s.generated_secret) == ((), False)
    assert list(home.iterdir()) == []
    assert list(cache.iterdir()) == []

    # the explicit step writes, and only where the settings say
    keyed = s.with_development_key()
    assert keyed.generated_secret is True
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [
        Path("cache/kairos/dev-secret")
    ]


def test_importing_the_app_and_reading_settings_write_nothing(tmp_path):
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = "import app.app, app.cli; from app.settings import Settings; Settings.from_env()"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert list(home.iterdir()) == []
    assert list(cache.iterdir()) == []


def test_with_development_key_keeps_configured_keys(settings):
    s = settings()
    assert s.with_development_key() is s
    assert Settings.from_env(PRODUCTION_OK).with_development_key().secret_keys == (
        Secret(PRODUCTION_SECRET),
    )


# --- secrets never show ------------------------------------------------------------------


def test_secret_repr_hides_the_value():
    secret = Secret("hunter2-very-secret-value")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-very-secret-value"
    assert secret == Secret("hunter2-very-secret-value")
    assert secret != Secret("other")
    assert secret != "hunter2-very-secret-value"
    assert hash(secret) == hash(Secret("hunter2-very-secret-value"))


def test_settings_repr_hides_every_secret(settings):
    s = settings(REDIS_URL="redis://:redis-password-xyz@localhost:6379/0")
    text = repr(s)
    assert SECRET not in text
    assert API_KEY not in text
    assert "redis-password-xyz" not in text


def test_settings_are_immutable(settings):
    s = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.budget_ms = 1  # type: ignore[misc]
