"""`kairos import events`, `kairos events tail` and `kairos erase` against a real
redis-server (and a running server for `--server`): in-process through `main()`, and as
subprocesses."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from support import API_KEY, AUTH, feed_url, free_port, listening, serve
from test_cli import (  # running_server: the fixture, `kairos serve` on the embedded store
    KAIROS,
    jsonl,
    run_kairos,
    running_server,  # noqa: F401
    subprocess_env,
)

from app.app import create_app
from app.cli import events, main
from app.events.clock import parse_ts
from app.settings import Secret, Settings
from app.stores.redis.keys import EVENTS_CHANNEL

SettingsFactory = Callable[..., Settings]
Capsys = pytest.CaptureFixture[str]
Env = dict[str, str]
HOUR_AGO = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")


def native(
    event_id: str, user: str = "ada", kind: str = "product_view", **props: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": user,
        "type": kind,
        "ts": HOUR_AGO,
        "properties": props,
    }


# Lines 1-12: native and Segment events, a line that is not JSON, a blank line, invalid
# events, a duplicate, and an event dropped for a reader who declined tracking.
MIXED: list[object] = [
    native("e1", sku="A-1"),
    {
        "messageId": "m1",
        "type": "track",
        "userId": "ada",
        "event": "Product Added",
        "properties": {"sku": "A-1", "quantity": 2, "price": 10},
        "timestamp": HOUR_AGO,
    },
    "{not json",
    "",
    native("e2", kind="purchase"),
    native("e1", sku="A-1"),
    {"messageId": "m2", "type": "identify", "userId": "ada", "traits": {"firstName": "Ada"}},
    {"messageId": "m3", "type": "group", "userId": "ada", "groupId": "g"},
    [1, 2],
    native("c1", user="cy", kind="identify", traits={"consent": {"tracking": False}}),
    native("c2", user="cy", sku="B-2"),
    {"event_id": "x1", "type": "page_view", "properties": {}},
]
REJECTED = [
    "3: invalid_json: not valid JSON: ",
    "5: missing_field: properties.items is required",
    "8: unsupported_call: 'group' calls are not supported",
    "9: invalid_event: an event must be a JSON object",
    "12: missing_field: user_id or anonymous_id is required",
]


def summary(out: str, path: Path) -> tuple[str, list[str]]:
    """The counts line and each rejected line without the file name."""
    lines = out.splitlines()
    prefix = f"{path}:"
    return lines[0], [line.removeprefix(prefix) for line in lines[1:]]


def assert_rejected(shown: list[str]) -> None:
    assert len(shown) == len(REJECTED)
    for line, expected in zip(shown, REJECTED, strict=True):
        assert line.startswith(expected), line


def profile(client: redis.Redis, user: str) -> Any:
    raw = client.get(f"kairos:{{{user}}}:profile")
    return None if raw is None else orjson.loads(raw)


def keys_naming(client: redis.Redis, user: str) -> list[bytes]:
    """Every key with `user` in its name, however the store tags it."""
    return sorted(key for key in client.scan_iter() if user.encode() in key)


def app_on(settings: SettingsFactory, redis_url: str) -> Any:
    """A server on the test redis-server (create_app's KairosApp, which `serve` runs)."""
    return create_app(settings(REDIS_URL=redis_url))


async def first_name(client: httpx.AsyncClient) -> str:
    """Ada's first name as the profile feed shows it (through the server's cache)."""
    r = await client.get(feed_url("profile", "ada"))
    return str(r.json()["items"][0]["first_name"])


async def eventually(client: httpx.AsyncClient, name: str) -> None:
    deadline = time.monotonic() + 2  # the cache would keep the old copy for 5 s
    while await first_name(client) != name:
        assert time.monotonic() < deadline, "the running server kept its cached copy"
        await asyncio.sleep(0.01)


@pytest.fixture
def on_redis(clean_environ: Env, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url)
    return redis_url


# --- import ------------------------------------------------------------------------------


def test_import_mixed_file_into_redis(
    on_redis: str, capsys: Capsys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "events.jsonl", MIXED)
    assert main(["import", "events", str(path)]) == 1
    captured = capsys.readouterr()
    counts, shown = summary(captured.out, path)
    assert counts == "accepted 4, duplicates 1, dropped 1, rejected 5"
    assert_rejected(shown)
    assert "import events [" in captured.err  # the progress bar

    ada = profile(redis_client, "ada")
    assert ada["counters"] == {"product_view": 1, "add_to_cart": 1, "identify": 1}
    assert ada["cart"] == [{"sku": "A-1", "qty": 2, "price": 10}]
    assert ada["first_name"] == "Ada"
    assert profile(redis_client, "cy")["counters"] == {"identify": 1}
    assert redis_client.zcard("kairos:{ada}:history") == 3

    # Again: everything applied is a duplicate now; the bad lines are still reported.
    assert main(["import", "events", str(path)]) == 1
    counts, shown = summary(capsys.readouterr().out, path)
    assert counts == "accepted 0, duplicates 5, dropped 1, rejected 5"
    assert_rejected(shown)
    assert profile(redis_client, "ada")["counters"]["product_view"] == 1


def test_import_twice_all_duplicates_exits_0(
    on_redis: str, capsys: Capsys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Several batches, from many readers; a bad line past the first batch.
    rows: list[object] = [native(f"e{i}", user=f"r{i % 40}", sku="A-1") for i in range(1200)]
    rows[1099] = native("bad", sku="not a sku")
    path = jsonl(tmp_path / "many.jsonl", rows)
    assert main(["import", "events", str(path)]) == 1
    counts, shown = summary(capsys.readouterr().out, path)
    assert counts == "accepted 1199, duplicates 0, dropped 0, rejected 1"
    assert shown == [
        "1100: invalid_field: properties.sku: must be 1-64 characters of letters, "
        "digits and _ . : / -"
    ]
    assert profile(redis_client, "r0")["counters"] == {"product_view": 30}

    good = jsonl(tmp_path / "good.jsonl", [row for row in rows if row is not rows[1099]])
    assert main(["import", "events", str(good)]) == 0
    assert capsys.readouterr().out == "accepted 0, duplicates 1199, dropped 0, rejected 0\n"


def test_an_import_into_the_store_is_trusted_as_an_api_key(
    on_redis: str, capsys: Capsys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # The operator holds the store's credentials: a CRM's traits are set, unlike a
    # public write key's.
    traits = {"email": "rr@example.com", "tier": "gold", "loyalty_points": 5}
    path = jsonl(tmp_path / "crm.jsonl", [native("t1", user="rr", kind="identify", traits=traits)])
    assert main(["import", "events", str(path)]) == 0
    capsys.readouterr()
    stored = profile(redis_client, "rr")
    assert (stored["email"], stored["tier"], stored["loyalty_points"]) == (
        "rr@example.com",
        "gold",
        5,
    )


def test_import_caps_the_rejected_lines_shown(
    on_redis: str, capsys: Capsys, tmp_path: Path
) -> None:
    # Invalid events first, found when the batch is applied; then lines that are not
    # JSON, found as the batch is read: the first 20 lines are shown, in order.
    rows: list[object] = [native(f"e{i}", kind="nope") for i in range(5)] + ["{"] * 20
    path = jsonl(tmp_path / "bad.jsonl", [*rows, native("ok", sku="A-1")])
    assert main(["import", "events", str(path)]) == 1
    counts, shown = summary(capsys.readouterr().out, path)
    assert counts == "accepted 1, duplicates 0, dropped 0, rejected 25"
    assert [line.split(":")[0] for line in shown[:20]] == [str(n) for n in range(1, 21)]
    assert shown[4].startswith("5: unknown_type: ") and shown[5].startswith("6: invalid_json: ")
    assert shown[20:] == ["… and 5 more"]


def test_import_subprocess(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> None:
    path = jsonl(tmp_path / "events.jsonl", MIXED)
    result = run_kairos(
        ["import", "events", str(path)], subprocess_env(tmp_path, REDIS_URL=redis_url)
    )
    assert result.returncode == 1, result.stderr
    counts, shown = summary(result.stdout, path)
    assert counts == "accepted 4, duplicates 1, dropped 1, rejected 5"
    assert_rejected(shown)
    assert "Traceback" not in result.stderr
    assert profile(redis_client, "ada")["first_name"] == "Ada"


async def test_import_makes_running_servers_drop_cached_profiles(
    settings: SettingsFactory, redis_url: str, tmp_path: Path
) -> None:
    async with serve(app_on(settings, redis_url)) as client:
        r = await client.put("/v1/profiles/ada", json={"first_name": "Ada"}, headers=AUTH)
        assert r.status_code in (200, 201)
        assert await first_name(client) == "Ada"  # cached now
        identify = native("i1", kind="identify", traits={"first_name": "Augusta"})
        path = jsonl(tmp_path / "e.jsonl", [identify])
        env = subprocess_env(tmp_path, REDIS_URL=redis_url)
        result = await asyncio.to_thread(run_kairos, ["import", "events", str(path)], env)
        assert result.returncode == 0, result.stderr
        await eventually(client, "Augusta")


def test_import_needs_redis_or_a_server(clean_environ: Env, capsys: Capsys, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", [native("e1", sku="A-1")])
    assert main(["import", "events", str(path)]) == 2
    assert "set REDIS_URL, or pass --server" in capsys.readouterr().err
    assert main(["import", "events", str(path), "--server", "http://127.0.0.1:1"]) == 2
    assert "set KAIROS_API_KEY" in capsys.readouterr().err
    assert main(["import", "events", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_import_with_redis_unreachable_fails_cleanly(
    clean_environ: Env, monkeypatch: pytest.MonkeyPatch, capsys: Capsys, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("KAIROS_REDIS_TIMEOUT_MS", "100")
    path = jsonl(tmp_path / "e.jsonl", ["{bad", native("e1", sku="A-1")])
    assert main(["import", "events", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "accepted 0, duplicates 0, dropped 0, rejected 1"
    assert "stopped after line 0; re-running is safe" in captured.err
    assert "kairos: the store is unavailable: redis" in captured.err


# --- import through a running server ------------------------------------------------------


def test_import_through_a_running_server(
    clean_environ: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capsys,
    tmp_path: Path,
    running_server: str,  # noqa: F811 (the fixture imported from test_cli)
) -> None:
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    path = jsonl(tmp_path / "events.jsonl", MIXED)
    assert main(["import", "events", str(path), "--server", running_server]) == 1
    counts, shown = summary(capsys.readouterr().out, path)
    assert counts == "accepted 4, duplicates 1, dropped 1, rejected 5"
    assert_rejected(shown)
    r = httpx.get(f"{running_server}/v1/profiles/ada", headers=AUTH)
    assert r.json()["counters"] == {"product_view": 1, "add_to_cart": 1, "identify": 1}

    assert main(["import", "events", str(path), "--server", running_server]) == 1
    assert capsys.readouterr().out.startswith("accepted 0, duplicates 5, dropped 1, rejected 5\n")


def test_import_through_a_server_retries_503(
    clean_environ: Env, monkeypatch: pytest.MonkeyPatch, capsys: Capsys, tmp_path: Path
) -> None:
    answers = [
        httpx.Response(503, headers={"Retry-After": "0"}, json={"error": {"code": "x"}}),
        httpx.Response(202, json={"accepted": 1, "duplicates": 0, "dropped": 0, "rejected": []}),
    ]
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        bodies.append(orjson.loads(request.content))
        return answers.pop(0)

    def client(server: str, api_key: Secret) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key.reveal()}"}
        return httpx.AsyncClient(
            base_url=server, headers=headers, transport=httpx.MockTransport(handler)
        )

    monkeypatch.setattr(events, "_client", client)
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    path = jsonl(tmp_path / "e.jsonl", [native("e1", sku="A-1")])
    assert main(["import", "events", str(path), "--server", "http://kairos.test"]) == 0
    assert capsys.readouterr().out == "accepted 1, duplicates 0, dropped 0, rejected 0\n"
    assert len(bodies) == 2 and bodies[0] == bodies[1] == {"events": [native("e1", sku="A-1")]}


# --- tail --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [False, True], ids=["human", "json"])
async def test_tail_prints_events_as_they_are_applied(
    raw: bool, settings: SettingsFactory, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(KAIROS),
        "events",
        "tail",
        *(["--json"] if raw else []),
        env=subprocess_env(tmp_path, REDIS_URL=redis_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        deadline = time.monotonic() + 10
        while redis_client.pubsub_numsub(EVENTS_CHANNEL)[0][1] < 1:
            assert time.monotonic() < deadline, "kairos events tail did not subscribe"
            await asyncio.sleep(0.02)
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        local = when.astimezone(timezone(timedelta(hours=2))).isoformat()
        event = {**native("e1", sku="A-1", title="Lamp"), "ts": local}
        async with serve(app_on(settings, redis_url)) as client:
            r = await client.post("/v1/events", json=event, headers=AUTH)
            assert r.status_code == 202, r.text
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().rstrip("\n")
        if raw:
            applied = orjson.loads(line)
            assert parse_ts(applied.pop("ts")) == when
            assert applied == {k: v for k, v in event.items() if k != "ts"}
        else:
            utc = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert line == f'{utc} product_view user=ada e1 {{"sku":"A-1","title":"Lamp"}}'

        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 130
        err = (await proc.stderr.read()).decode()
        assert "Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_tail_needs_redis(clean_environ: Env, capsys: Capsys) -> None:
    assert main(["events", "tail"]) == 2
    assert "set REDIS_URL" in capsys.readouterr().err


# --- erase -------------------------------------------------------------------------------


def test_erase_then_verify(
    on_redis: str, capsys: Capsys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path / "e.jsonl",
        [
            {**native("v1", sku="A-1"), "user_id": None, "anonymous_id": "visitor-1"},
            {**native("i1", kind="identify", traits={}), "anonymous_id": "visitor-1"},
            native("b1", user="bob", sku="B-1"),
        ],
    )
    assert main(["import", "events", str(path)]) == 0
    capsys.readouterr()

    assert main(["erase", "--verify", "ada"]) == 1
    captured = capsys.readouterr()
    left = captured.out.splitlines()
    stored = keys_naming(redis_client, "ada") + keys_naming(redis_client, "visitor-1")
    assert sorted(left) == sorted(k.decode() for k in stored)
    assert "kairos:{ada}:profile" in left
    assert f"{len(left)} keys still name ada" in captured.err

    assert main(["erase", "ada"]) == 0
    assert capsys.readouterr().out == (
        "erased ada and 2 merged id(s)\n"  # ~visitor-1, and visitor-1 (a trusted import)
        "suppressed: its events are refused until `kairos erase --lift ada`\n"
    )
    assert main(["erase", "--verify", "ada"]) == 0
    assert capsys.readouterr().out == "no key names ada\n"
    assert keys_naming(redis_client, "ada") == keys_naming(redis_client, "visitor-1") == []
    assert profile(redis_client, "bob") is not None  # only the erased reader

    # Suppressed: its events are refused, until the suppression is lifted.
    again = jsonl(tmp_path / "again.jsonl", [native("e9", sku="A-1")])
    assert main(["import", "events", str(again)]) == 1
    assert f"{again}:1: suppressed: " in capsys.readouterr().out
    assert main(["erase", "--lift", "ada"]) == 0
    assert capsys.readouterr().out == "lifted the suppression of ada\n"
    assert main(["erase", "--lift", "ada"]) == 0
    assert capsys.readouterr().out == "ada was not suppressed\n"
    assert main(["import", "events", str(again)]) == 0
    assert capsys.readouterr().out.startswith("accepted 1,")


def test_erase_without_suppressing(
    on_redis: str, capsys: Capsys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "e.jsonl", [native("e1", sku="A-1")])
    assert main(["import", "events", str(path)]) == 0
    assert main(["erase", "--no-suppress", "ada"]) == 0
    assert capsys.readouterr().out.endswith(
        "erased ada\nnot suppressed: a later event for ada creates a new profile\n"
    )
    assert main(["erase", "ada"]) == 0  # nothing stored any more
    assert "erased ada (no profile was stored)\n" in capsys.readouterr().out
    assert main(["erase", "--lift", "ada"]) == 0
    assert main(["import", "events", str(path)]) == 0  # its dedupe ids went with it
    assert capsys.readouterr().out.endswith("accepted 1, duplicates 0, dropped 0, rejected 0\n")


async def test_erase_makes_running_servers_drop_cached_profiles(
    on_redis: str, capsys: Capsys, settings: SettingsFactory, redis_url: str
) -> None:
    async with serve(app_on(settings, redis_url)) as client:
        r = await client.put("/v1/profiles/ada", json={"first_name": "Ada"}, headers=AUTH)
        assert r.status_code in (200, 201)
        assert await first_name(client) == "Ada"  # cached now
        assert await asyncio.to_thread(main, ["erase", "ada"]) == 0
        await eventually(client, "there")  # the feed's fallback name: no profile
        # and the server refuses the suppressed reader's events (same keyed hashes)
        r = await client.post("/v1/events", json=native("e1", sku="A-1"), headers=AUTH)
        assert r.json()["rejected"][0]["code"] == "suppressed"


def test_erase_errors(clean_environ: Env, capsys: Capsys) -> None:
    assert main(["erase", "ada"]) == 2
    assert "set REDIS_URL" in capsys.readouterr().err
    assert main(["erase", "bad@id"]) == 2
    assert "user_id must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["erase", "--verify", "--lift", "ada"])


def test_segments_explain_says_why_rule_by_rule(
    on_redis: str, capsys: Capsys, tmp_path: Path
) -> None:
    views = [native(f"v{i}", user="sx", sku="SKU-1") for i in range(3)]
    assert main(["import", "events", str(jsonl(tmp_path / "v.jsonl", views))]) == 0
    capsys.readouterr()
    assert main(["segments", "explain", "sx"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sx: browsing_intent"
    [line] = [x for x in out if x.startswith("browsing_intent (priority 30): ")]
    assert "SKU-1" in line and "3" in line
    assert any(x.startswith("vip (priority 50): ") for x in out)


def test_segments_explain_needs_redis(clean_environ: Env, capsys: Capsys) -> None:
    assert main(["segments", "explain", "sx"]) == 2
    assert "set REDIS_URL" in capsys.readouterr().err


async def test_a_server_that_never_answers_is_a_store_error_after_every_retry(monkeypatch):
    """Every attempt's answer lost (the connection closed before it): the batch ends as
    `StoreUnavailable` saying so, after all the retries."""
    attempts = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        await reader.read(1024)
        writer.close()

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(events.asyncio, "sleep", no_wait)
    async with listening(hang_up) as port:
        server = f"http://127.0.0.1:{port}"
        async with events._client(server, Secret(API_KEY)) as client:
            refused = f"still answered nothing after {events.RETRIES} attempts"
            with pytest.raises(events.StoreUnavailable, match=refused):
                await events._post(client, server, [{"event_id": "e"}])
    assert attempts == events.RETRIES
