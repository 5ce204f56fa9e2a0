"""The `kairos` command: sign, import (into a real redis-server, and through a running
server's API), serve's start-up checks; in-process through `main()` and as a subprocess."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from PIL import Image
from support import (
    ADA_PROFILE_ITEM,
    API_KEY,
    AUTH,
    SECRET,
    TOKENS,
    click_grants,
    feed_url,
    free_port,
    serve,
    stop_process,
)

from app.app import create_app
from app.cli import main
from app.settings import Secret
from app.tokens import BadToken, Tokens

KAIROS = Path(sys.executable).parent / "kairos"
PUBLIC_URL = "https://kairos.example.com"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp_path / "dev-secret"),
        "KAIROS_PUBLIC_URL": PUBLIC_URL,
    }
    env.update(extra)
    return env


def run_kairos(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAIROS), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


# --- sign --------------------------------------------------------------------------------


async def test_sign_in_process_and_the_url_works(clean_environ, monkeypatch, capsys, settings):
    monkeypatch.setenv("KAIROS_PUBLIC_URL", PUBLIC_URL)
    before = int(time.time())
    assert (
        main(["sign", "feed", "cart", "--user", "ada", "--campaign", "spring", "--ttl", "60"]) == 0
    )
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{PUBLIC_URL}/v1/feeds/cart?t=")
    assert "\n" not in out

    grant = TOKENS.verify("feed", token_of(out))
    assert (grant.purpose, grant.user_id, grant.resource, grant.campaign) == (
        "feed",
        "ada",
        "cart",
        "spring",
    )
    assert before + 60 <= grant.expires_at <= int(time.time()) + 60

    # the printed URL, served by an app with the same key
    parts = urlsplit(out)
    async with serve(create_app(settings())) as client:
        r = await client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200
    assert [item["sku"] for item in r.json()["items"]] == ["SKU-1", "SKU-2"]


def test_sign_uses_the_first_key(clean_environ, monkeypatch, capsys):
    old = "old-key-abcdefghijklmnopqrstuvwxyz-0123"
    monkeypatch.setenv("KAIROS_SECRET_KEYS", f"{SECRET},{old}")
    assert main(["sign", "feed", "profile", "--user", "ada"]) == 0
    token = token_of(capsys.readouterr().out.strip())
    assert TOKENS.verify("feed", token).resource == "profile"
    with pytest.raises(BadToken):
        Tokens((Secret(old),)).verify("feed", token)


def test_sign_subprocess(tmp_path: Path):
    result = run_kairos(["sign", "feed", "profile", "--user", "ada"], subprocess_env(tmp_path))
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(f"{PUBLIC_URL}/v1/feeds/profile?t=")
    grant = TOKENS.verify("feed", token_of(url))
    assert (grant.user_id, grant.resource, grant.expires_at, grant.campaign) == (
        "ada",
        "profile",
        None,
        None,
    )


async def test_sign_subprocess_with_development_key_matches_the_server(tmp_path: Path, settings):
    """No KAIROS_SECRET_KEYS: `kairos sign` and the server share the generated key file."""
    env = subprocess_env(tmp_path)
    del env["KAIROS_SECRET_KEYS"]
    env["KAIROS_ENV"] = "development"
    result = run_kairos(["sign", "feed", "profile", "--user", "ada"], env)
    assert result.returncode == 0, result.stderr
    parts = urlsplit(result.stdout.strip())

    app = create_app(
        settings(KAIROS_SECRET_KEYS=None, KAIROS_DEV_SECRET_FILE=env["KAIROS_DEV_SECRET_FILE"])
    )
    assert app.state.services.settings.generated_secret
    async with serve(app) as client:
        r = await client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "ada@example.org"], "kairos: user_id must be"),
        (["--user", "{ada}"], "kairos: user_id must be"),
        (
            ["--user", "ada", "--ttl", "0"],
            "kairos: configuration error: --ttl must be between 1 and 315360000 seconds",
        ),
        (["--user", "ada", "--ttl", "-5"], "--ttl must be between 1 and"),
        # Once a traceback: past what the token's JSON can hold.
        (["--user", "ada", "--ttl", "99999999999999999999"], "--ttl must be between 1 and"),
        (["--user", "ada", "--ttl", "315360001"], "--ttl must be between 1 and"),
    ],
)
def test_sign_errors(clean_environ, capsys, args: list[str], message: str):
    assert main(["sign", "feed", "profile", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_sign_unknown_feed_is_a_usage_error(clean_environ, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sign", "feed", "weather", "--user", "ada"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_sign_refuses_production_without_keys(tmp_path: Path):
    env = subprocess_env(tmp_path, KAIROS_ENV="production")
    del env["KAIROS_SECRET_KEYS"]
    result = run_kairos(["sign", "feed", "profile", "--user", "ada"], env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        "kairos: configuration error: KAIROS_SECRET_KEYS is required in production" in result.stderr
    )
    assert "Traceback" not in result.stderr


# --- serve (start-up checks only) --------------------------------------------------------


def test_serve_refuses_several_workers_on_the_embedded_store(clean_environ, capsys):
    assert main(["serve", "--workers", "2"]) == 2
    assert "set REDIS_URL to run 2 workers" in capsys.readouterr().err


def test_serve_refuses_bad_config(clean_environ, monkeypatch, capsys):
    monkeypatch.setenv("KAIROS_BUDGET_MS", "fast")
    assert main(["serve"]) == 2
    assert "KAIROS_BUDGET_MS must be an integer" in capsys.readouterr().err


@pytest.fixture
def uvicorn_runs(monkeypatch) -> list[dict[str, object]]:
    """What `kairos serve` would hand to uvicorn (which is not started)."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.append(kwargs))
    return calls


def test_serve_listens_where_the_settings_say(clean_environ, monkeypatch, uvicorn_runs):
    assert main(["serve"]) == 0
    assert [(r["host"], r["port"], r["workers"]) for r in uvicorn_runs] == [("127.0.0.1", 8000, 1)]

    monkeypatch.setenv("HOST", "10.0.0.5")
    monkeypatch.setenv("PORT", "9000")
    assert main(["serve"]) == 0
    assert main(["serve", "--host", "127.0.0.2", "--port", "9001"]) == 0
    assert [(r["host"], r["port"]) for r in uvicorn_runs[1:]] == [
        ("10.0.0.5", 9000),
        ("127.0.0.2", 9001),
    ]


def test_serve_takes_its_workers_from_web_concurrency(clean_environ, monkeypatch, capsys):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert main(["serve"]) == 2
    assert "set REDIS_URL to run 3 workers" in capsys.readouterr().err


def test_serve_refuses_a_bad_port(clean_environ, monkeypatch, capsys, uvicorn_runs):
    monkeypatch.setenv("PORT", "http")
    assert main(["serve"]) == 2
    assert "PORT must be an integer, not 'http'" in capsys.readouterr().err
    assert uvicorn_runs == []


def test_serve_makes_the_development_key_before_the_workers_start(
    clean_environ, monkeypatch, uvicorn_runs
):
    # The workers then read one file rather than race to create it.
    monkeypatch.delenv("KAIROS_SECRET_KEYS")
    assert main(["serve"]) == 0
    assert Path(clean_environ["KAIROS_DEV_SECRET_FILE"]).is_file()


# --- import into redis -------------------------------------------------------------------

GOOD_1 = {"user_id": "u1", "first_name": "Ada", "loyalty_points": 5}
GOOD_6 = {"user_id": "u6", "first_name": "Grace", "cart": [{"sku": "SKU-1", "qty": 2}]}


def jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else orjson.dumps(line).decode() for line in lines)
        + "\n"
    )
    return path


def error_lines(stderr: str, path: Path) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{path}:")]


def without_user_id(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "user_id"}


def test_import_profiles_into_redis(
    clean_environ, monkeypatch, capsys, redis_url, redis_client, tmp_path
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = jsonl(
        tmp_path / "profiles.jsonl",
        [
            GOOD_1,
            {"user_id": "u2", "shoe_size": 4},
            "",
            {"first_name": "No id"},
            {"user_id": "bad@id", "first_name": "X"},
            GOOD_6,
            {"user_id": "u7", "loyalty_points": "lots"},
        ],
    )
    assert main(["import", "profiles", str(path)]) == 1
    captured = capsys.readouterr()
    assert "imported 2, rejected 4" in captured.out

    errors = error_lines(captured.err, path)
    assert [e.split(":")[1] for e in errors] == ["2", "4", "5", "7"]
    assert errors[0].startswith(f"{path}:2: shoe_size: is not a known field")
    assert errors[1] == f"{path}:4: missing string field 'user_id'"
    assert errors[2].startswith(f"{path}:5: user_id must be")
    assert errors[3] == f"{path}:7: loyalty_points: must be an integer"

    assert orjson.loads(redis_client.get("kairos:{u1}:profile")) == without_user_id(GOOD_1)
    assert orjson.loads(redis_client.get("kairos:{u6}:profile")) == without_user_id(GOOD_6)
    assert sorted(redis_client.keys("*")) == [b"kairos:{u1}:profile", b"kairos:{u6}:profile"]


def test_import_all_good_exits_0(
    clean_environ, monkeypatch, capsys, redis_url, redis_client, tmp_path
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    rows = [{"user_id": f"r{i}", "loyalty_points": i} for i in range(2500)]  # several batches
    path = jsonl(tmp_path / "many.jsonl", rows)
    assert main(["import", "profiles", str(path)]) == 0
    assert "imported 2500, rejected 0" in capsys.readouterr().out
    assert redis_client.dbsize() == 2500
    assert orjson.loads(redis_client.get("kairos:{r2499}:profile")) == {"loyalty_points": 2499}


def test_imported_profiles_are_served(clean_environ, monkeypatch, redis_url, tmp_path, settings):
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["import", "profiles", str(jsonl(tmp_path / "p.jsonl", [GOOD_1]))]) == 0

    async def check():
        app = create_app(settings(REDIS_URL=redis_url))
        async with serve(app) as client:
            r = await client.get("/v1/profiles/u1", headers=AUTH)
            assert r.json() == {
                "user_id": "u1",
                "first_name": "Ada",
                "loyalty_points": 5,
                "segments": {"primary": None, "all": []},
            }

    asyncio.run(check())


async def test_import_makes_running_servers_drop_cached_profiles(
    tmp_path: Path, redis_url, settings
):
    app = create_app(settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true"))
    async with serve(app) as client:
        r = await client.get(feed_url("profile", "ada"))
        assert r.json()["items"][0]["first_name"] == "Ada"  # cached for 5 s

        path = jsonl(tmp_path / "p.jsonl", [{"user_id": "ada", "first_name": "Augusta"}])
        proc = await asyncio.create_subprocess_exec(
            str(KAIROS),
            "import",
            "profiles",
            str(path),
            env=subprocess_env(tmp_path, REDIS_URL=redis_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"imported 1, rejected 0" in out

        deadline = time.monotonic() + 2
        while True:
            r = await client.get(feed_url("profile", "ada"))
            if r.json()["items"][0]["first_name"] == "Augusta":
                break
            assert time.monotonic() < deadline, "the running server kept its cached copy"
            await asyncio.sleep(0.01)


def test_import_reports_many_errors_briefly(
    clean_environ, monkeypatch, capsys, redis_url, tmp_path
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = jsonl(tmp_path / "bad.jsonl", [{"user_id": f"u{i}", "x": 1} for i in range(30)])
    assert main(["import", "profiles", str(path)]) == 1
    captured = capsys.readouterr()
    assert len(error_lines(captured.err, path)) == 20
    assert "... and 10 more errors" in captured.err
    assert "imported 0, rejected 30" in captured.out


def test_import_continues_after_a_line_that_is_not_json(
    clean_environ, monkeypatch, capsys, redis_url, redis_client, tmp_path
):
    # Regression: read_jsonl raised BadImportLine for a line that is not JSON (or not an
    # object) from inside its generator, which ended it: every line after the bad one was
    # silently skipped (neither imported nor reported).
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = jsonl(
        tmp_path / "p.jsonl",
        [GOOD_1, "{this is not json", "[1, 2]", {"user_id": "u4", "tier": 4}, GOOD_6],
    )
    assert main(["import", "profiles", str(path)]) == 1
    captured = capsys.readouterr()
    errors = error_lines(captured.err, path)
    assert [e.split(":")[1] for e in errors] == ["2", "3", "4"]
    assert errors[0].startswith(f"{path}:2: not valid JSON")
    assert errors[1] == f"{path}:3: each line must be a JSON object"
    assert errors[2] == f"{path}:4: tier: must be a string"
    assert "imported 2, rejected 3" in captured.out
    assert orjson.loads(redis_client.get("kairos:{u6}:profile")) == without_user_id(GOOD_6)
    assert sorted(redis_client.keys("*")) == [b"kairos:{u1}:profile", b"kairos:{u6}:profile"]


def test_import_through_a_server_continues_after_a_line_that_is_not_json(
    clean_environ, monkeypatch, capsys, tmp_path, running_server
):
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1, "not json", GOOD_6])
    assert main(["import", "profiles", str(path), "--server", running_server]) == 1
    captured = capsys.readouterr()
    assert "imported 2, rejected 1" in captured.out
    assert [e.split(":")[1] for e in error_lines(captured.err, path)] == ["2"]
    assert httpx.get(f"{running_server}/v1/profiles/u6", headers=AUTH).status_code == 200


def test_import_line_that_is_not_json_is_reported(
    clean_environ, monkeypatch, capsys, redis_url, tmp_path
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1, "{this is not json"])
    assert main(["import", "profiles", str(path)]) == 1
    errors = error_lines(capsys.readouterr().err, path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:2: not valid JSON")


def test_import_catalog_into_redis(
    clean_environ, monkeypatch, capsys, redis_url, redis_client, tmp_path
):
    monkeypatch.setenv("REDIS_URL", redis_url)
    path = jsonl(
        tmp_path / "catalog.jsonl",
        [
            {"sku": "A-1", "title": "A", "price": 1.5, "popularity": 5},
            {"sku": "bad sku", "title": "B"},
            {"sku": "C-1", "title": "C", "popularity": 9},
            {"sku": "D-1", "price": "free"},
        ],
    )
    assert main(["import", "catalog", str(path)]) == 1
    captured = capsys.readouterr()
    assert "imported 2, rejected 2" in captured.out
    assert [e.split(":")[1] for e in error_lines(captured.err, path)] == ["2", "4"]
    assert orjson.loads(redis_client.hget("kairos:catalog", "A-1"))["price"] == 1.5
    # popularity is stored negated: ZRANGE lists the most popular first
    assert redis_client.zrange("kairos:popular", 0, -1, withscores=True) == [
        (b"C-1", -9.0),
        (b"A-1", -5.0),
    ]


def test_import_subprocess(tmp_path: Path, redis_url, redis_client):
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1, {"user_id": "u2", "tier": 3}])
    result = run_kairos(
        ["import", "profiles", str(path)], subprocess_env(tmp_path, REDIS_URL=redis_url)
    )
    assert result.returncode == 1, result.stderr
    assert "imported 1, rejected 1" in result.stdout
    assert error_lines(result.stderr, path) == [f"{path}:2: tier: must be a string"]
    assert redis_client.exists("kairos:{u1}:profile") == 1


def test_import_with_redis_unreachable_fails_cleanly(tmp_path: Path):
    # Regression: main() did not catch StoreUnavailable: `kairos import` with redis
    # unreachable died with a raw traceback (exit 1) instead of a one-line message.
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1])
    env = subprocess_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run_kairos(["import", "profiles", str(path)], env)
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]  # (after the progress line)
    assert last.startswith("kairos: the store is unavailable: redis"), result.stderr
    assert result.returncode == 2


def test_import_catalog_with_redis_unreachable_fails_cleanly_in_process(
    clean_environ, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    path = jsonl(tmp_path / "c.jsonl", [{"sku": "A-1"}])
    assert main(["import", "catalog", str(path)]) == 2
    err = capsys.readouterr().err
    assert "kairos: the store is unavailable: redis" in err
    assert "Traceback" not in err


def test_import_needs_redis_or_a_server(clean_environ, capsys, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1])
    assert main(["import", "profiles", str(path)]) == 2
    assert "set REDIS_URL, or pass --server" in capsys.readouterr().err


def test_import_missing_file(clean_environ, capsys, tmp_path):
    assert main(["import", "profiles", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_import_through_server_needs_an_api_key(clean_environ, capsys, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1])
    assert main(["import", "profiles", str(path), "--server", "http://127.0.0.1:1"]) == 2
    assert "set KAIROS_API_KEY" in capsys.readouterr().err


def test_import_catalog_through_server_is_refused(clean_environ, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    path = jsonl(tmp_path / "c.jsonl", [{"sku": "A-1"}])
    assert main(["import", "catalog", str(path), "--server", "http://127.0.0.1:1"]) == 2
    assert "only profiles" in capsys.readouterr().err


# --- import through a running server (kairos serve, embedded store) ----------------------


@pytest.fixture
def running_server(tmp_path: Path):
    port = free_port()
    env = subprocess_env(tmp_path, KAIROS_LOG_LEVEL="WARNING")
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(KAIROS), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "kairos serve did not become ready"
            time.sleep(0.05)
        yield base
    finally:
        stop_process(proc)


def test_import_through_a_running_server(
    clean_environ, monkeypatch, capsys, tmp_path, running_server
):
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    path = jsonl(tmp_path / "p.jsonl", [GOOD_1, {"user_id": "u2", "shoe_size": 1}, GOOD_6])
    assert main(["import", "profiles", str(path), "--server", running_server]) == 1
    captured = capsys.readouterr()
    assert "imported 2, rejected 1" in captured.out
    assert [e.split(":")[1] for e in error_lines(captured.err, path)] == ["2"]

    r = httpx.get(f"{running_server}/v1/profiles/u6", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["cart"] == [{"sku": "SKU-1", "qty": 2}]
    # and the feed, signed with the same key, serves the imported reader
    token = TOKENS.sign("feed", "u1", "profile")
    r = httpx.get(f"{running_server}/v1/feeds/profile", params={"t": token})
    assert r.json()["items"][0]["first_name"] == "Ada"


# --- sign image -----------------------------------------------------------------------


async def test_sign_image_prints_a_url_the_server_draws(
    clean_environ, monkeypatch, capsys, settings
):
    monkeypatch.setenv("KAIROS_PUBLIC_URL", PUBLIC_URL)
    argv = ["sign", "image", "countdown", "--user", "ada", "--campaign", "xmas",
            "--param", "deadline=2026-12-24T23:59:59Z", "--param", "frames=10"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{PUBLIC_URL}/v1/img/countdown.gif?t=")
    grant = TOKENS.verify("image", token_of(out))
    assert (grant.user_id, grant.resource, grant.campaign) == ("ada", "countdown", "xmas")
    assert grant.params == {"deadline": "2026-12-24T23:59:59Z", "frames": "10"}

    parts = urlsplit(out)
    app = create_app(settings())
    app.state.services.images.clock = lambda: 1798156799 - 3600  # an hour before
    async with serve(app) as client:
        r = await client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers
    image = Image.open(io.BytesIO(r.content))
    assert (image.format, image.size, image.n_frames) == ("GIF", (1200, 240), 10)  # 2x


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["countdown", "--user", "ada"], "kairos: countdown: deadline is required"),
        (
            [
                "countdown",
                "--user",
                "ada",
                "--param",
                "deadline=2026-12-24T23:59:59Z",
                "--param",
                "width=4000",
            ],
            "width 4000 is above the limit of 1200",
        ),
        (["banner", "--user", "ada", "--param", "headline"], "--param must be KEY=VALUE"),
        (["banner", "--user", "ada", "--param", "size=3"], "unknown parameter(s): size"),
        (["product", "--user", "ada@example.org"], "user_id must be"),
    ],
)
def test_sign_image_errors(clean_environ, capsys, args: list[str], message: str):
    assert main(["sign", "image", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_sign_image_unknown_name_is_a_usage_error(clean_environ, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sign", "image", "weather", "--user", "ada"])
    assert info.value.code == 2


def test_sign_click_with_a_slot(clean_environ, capsys):
    url = "https://shop.example.com/new"
    assert main(["sign", "click", "--user", "ada", "--url", url, "--slot", "2"]) == 0
    grant, reader = click_grants(capsys.readouterr().out.strip())
    assert (grant.resource, grant.params) == (url, {"slot": 2})
    assert reader is not None and reader.user_id == "ada"
    assert main(["sign", "click", "--user", "ada", "--url", url, "--slot", "20"]) == 2
    assert "slot must be an integer from 0 to 19" in capsys.readouterr().err
