"""The upstream recommendation model (KAIROS_RECS_URL) against a real local HTTP server
that records what it was sent: a good answer is blended in; a slow, failing, invalid or
wrongly shaped one leaves the in-house recommendations, within the budget, counted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from support import listening
from test_events_api import Kairos, ev
from test_events_api import kairos as kairos  # the fixture, used by name
from test_recs import feed, settle, views

from app.app import create_app
from app.recs.upstream import Invalid, parse_answer
from app.settings import ConfigError


class FakeModel:
    """An HTTP/1.1 server on 127.0.0.1 answering each POST as `mode` says, keeping each
    request's headers and JSON body."""

    def __init__(self) -> None:
        self.mode = "good"
        self.answer: Any = [{"sku": "SKU-7", "score": 0.9}, {"sku": "SKU-8", "score": 0.4}]
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((headers, orjson.loads(body)))
                status, content = 200, orjson.dumps(self.answer)
                if self.mode == "slow":
                    await asyncio.sleep(2.0)
                elif self.mode == "failing":
                    status, content = 503, b'{"error": "overloaded"}'
                elif self.mode == "invalid":
                    content = b"[{'sku': not json"
                elif self.mode == "shape":
                    content = b'{"items": ["SKU-7"]}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(content)}\r\n\r\n".encode()
                    + content
                )
                await writer.drain()


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    fake = FakeModel()
    async with listening(fake.handle) as fake.port:
        yield fake


def upstream_env(model: FakeModel) -> dict[str, str]:
    return {
        "KAIROS_RECS_URL": f"http://127.0.0.1:{model.port}/rank",
        "KAIROS_UPSTREAM_HOSTS": f"127.0.0.1:{model.port}",
        "KAIROS_BUDGET_MS": "150",
        "KAIROS_RECS_TIMEOUT_MS": "60",
    }


async def upstream_count(k: Kairos, result: str) -> float:
    text = (await k.client.get("/metrics")).text
    found = re.search(rf'^kairos_recs_upstream_total{{result="{result}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def test_a_good_answer_is_blended_and_the_model_never_learns_who(kairos, model):
    async with kairos(**upstream_env(model)) as k:
        await k.post(views("u1", "SKU-3", "SKU-5"))
        # the cart line two hours after the view: no co-occurrence, only context
        await k.post(views("reader", "SKU-3", minutes=120))
        await k.post(ev("add_to_cart", "reader", sku="SKU-2"))
        await settle(k)
        got = await feed(k, "reader")
        assert got == [
            ("SKU-5", "related"),
            ("SKU-7", "model"),
            ("SKU-3", "recent"),
            ("SKU-8", "model"),
        ]
        headers, body = model.requests[-1]
        assert body == {"recent_views": ["SKU-3"], "cart": ["SKU-2"], "segment": None, "limit": 20}
        assert "reader" not in orjson.dumps(body).decode() + repr(headers)
        assert await upstream_count(k, "ok") == 1


@pytest.mark.parametrize(
    ("mode", "result"),
    [
        ("slow", "timeout"),
        ("failing", "status"),
        ("invalid", "invalid_json"),
        ("shape", "invalid_shape"),
    ],
)
async def test_a_model_that_fails_leaves_the_in_house_result_in_budget(kairos, model, mode, result):
    model.mode = mode
    async with kairos(**upstream_env(model)) as k:
        await k.post(views("u1", "SKU-3", "SKU-5"))
        await k.post(views("reader", "SKU-3"))
        await settle(k)
        start = time.monotonic()
        got = await feed(k, "reader")  # no fallback header: checked by `feed`
        assert time.monotonic() - start < 0.15 + 0.1
        assert got[0] == ("SKU-5", "related") and "model" not in {s for _, s in got}
        assert len(model.requests) == 1  # it was asked
        assert await upstream_count(k, result) == 1
        assert await upstream_count(k, "ok") == 0


async def test_a_model_host_outside_the_allow_list_stops_the_start(settings):
    with pytest.raises(ConfigError, match="KAIROS_UPSTREAM_HOSTS"):
        create_app(settings(KAIROS_RECS_URL="http://model.example.com/rank"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'["A", "B", "C"]', {"A": 3.0, "B": 2.0, "C": 1.0}),
        (b'[{"sku": "A", "score": 0.5}, {"sku": "B", "score": -1}]', {"A": 0.5, "B": -1.0}),
        (b'[{"sku": "A", "score": 1}, {"sku": "A", "score": 9}]', {"A": 1.0}),
        (b"[]", {}),
    ],
)
def test_answers_that_are_used(body: bytes, expected: dict[str, float]):
    assert parse_answer(body) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'{"items": []}', "invalid_shape"),
        (b"[1, 2]", "invalid_shape"),
        (b'[{"sku": "A"}]', "invalid_shape"),
        (b'[{"sku": "A", "score": "high"}]', "invalid_shape"),
        (b'[{"sku": "A", "score": true}]', "invalid_shape"),
        (b'[{"sku": "<script>", "score": 1}]', "invalid_shape"),
        (b'["' + b"x" * 65 + b'"]', "invalid_shape"),
        (orjson.dumps([f"S{i}" for i in range(101)]), "invalid_shape"),
    ],
)
def test_answers_that_are_refused(body: bytes, reason: str):
    with pytest.raises(Invalid) as caught:
        parse_answer(body)
    assert caught.value.reason == reason
