"""Upstream answers that inflate: a gzip body that would become far more than the cap is
refused having held no more than the cap, through a real HTTP server and httpx; a gzip or
deflate answer within the cap reads whole; an encoding Kairos does not read is refused;
and a product image whose upstream sends a gzip bomb falls back."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import httpx
import pytest
from support import Upstream

from app.upstream_body import ACCEPT_ENCODING, TooLarge, capped_body

CAP = 5 * 1024 * 1024
BOMB = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MB of zeros


async def read(url: str, limit: int = CAP) -> bytes:
    async with httpx.AsyncClient(headers={"Accept-Encoding": ACCEPT_ENCODING}) as client:
        async with client.stream("GET", url) as response:
            return await capped_body(response, limit)


async def test_a_gzip_bomb_is_refused_within_the_cap():
    assert len(BOMB) < 1024 * 1024
    async with Upstream() as up:
        url = up.route("/bomb.png", BOMB, headers={"Content-Encoding": "gzip"})
        tracemalloc.start()
        try:
            with pytest.raises(TooLarge, match="more than"):
                await read(url)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 3 * CAP, f"held {peak} bytes for a cap of {CAP}"


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes), ("", bytes)],
)
async def test_an_encoded_answer_within_the_cap_reads_whole(encoding, encode):
    body = bytes(range(256)) * 4000  # ~1 MB
    headers = {"Content-Encoding": encoding} if encoding else {}
    async with Upstream() as up:
        url = up.route("/ok", encode(body), headers=headers)
        assert await read(url) == body


async def test_an_answer_just_over_the_cap_is_refused_in_every_encoding():
    body = b"x" * (CAP + 1)
    for encoding, encode in (("gzip", gzip.compress), ("identity", bytes)):
        async with Upstream() as up:
            url = up.route("/over", encode(body), headers={"Content-Encoding": encoding})
            with pytest.raises(TooLarge):
                await read(url)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_encoding_kairos_does_not_read_is_refused(encoding):
    async with Upstream() as up:
        url = up.route("/x", b"whatever", headers={"Content-Encoding": encoding})
        with pytest.raises(TooLarge, match="does not read"):
            await read(url)


async def test_a_product_image_whose_upstream_sends_a_bomb_falls_back(settings):
    from support import serve
    from test_images import _with_product, fetch, image_url

    from app.app import create_app

    async with Upstream() as up:
        url = up.route("/bomb.png", BOMB, headers={"Content-Encoding": "gzip"})
        app = create_app(settings(KAIROS_UPSTREAM_HOSTS="127.0.0.1"))
        async with serve(app) as client:
            await _with_product(client, app, "uma", image_url=url)
            r = await fetch(client, image_url("product", "uma"))
    assert r.headers.get("x-kairos-fallback")
