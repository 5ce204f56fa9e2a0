"""Signed open-time tokens: purposes, tampering, expiry, key rotation; and how the feed
endpoint answers each kind of bad token."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from support import (
    ADA_PROFILE_ITEM,
    OLD_SECRET,
    SECRET,
    assert_error,
    fallback_body,
    feed_url,
    serve,
)

from app.app import create_app
from app.settings import Secret
from app.tokens import MAX_TOKEN_LENGTH, BadToken, Grant, Tokens

NEW_SECRET = "new-secret-key-0123456789-abcdefghijklmnopq"


def tokens(*keys: str) -> Tokens:
    return Tokens(tuple(Secret(k) for k in keys))


def flip(token: str, index: int) -> str:
    """The token with the character at `index` replaced by another base64url character.
    Middle characters carry 6 data bits, so the decoded bytes always change."""
    c = token[index]
    return token[:index] + ("A" if c != "A" else "B") + token[index + 1 :]


def payload_of(token: str) -> dict:
    payload, _, _sig = token.rpartition(".")
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- the Tokens class --------------------------------------------------------------------


def test_sign_and_verify_round_trip():
    t = tokens(SECRET)
    token = t.sign("feed", "u123", "cart", campaign="spring", params={"k": 1})
    grant = t.verify("feed", token)
    assert grant == Grant("feed", "u123", "cart", "spring", None, {"k": 1})
    assert not grant.expired()


def test_token_is_url_safe_and_carries_only_opaque_fields():
    token = tokens(SECRET).sign("feed", "u123", "profile")
    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)
    assert payload_of(token) == {"u": "u123", "r": "profile"}


def test_ttl_sets_expiry():
    t = tokens(SECRET)
    before = int(time.time())
    grant = t.verify("feed", t.sign("feed", "u1", "cart", ttl_s=60))
    assert before + 60 <= grant.expires_at <= int(time.time()) + 60
    assert not grant.expired()
    assert grant.expired(now=grant.expires_at)
    assert grant.expired(now=grant.expires_at + 1)
    assert not grant.expired(now=grant.expires_at - 1)


def test_negative_ttl_token_is_expired_but_still_verifies():
    t = tokens(SECRET)
    grant = t.verify("feed", t.sign("feed", "u1", "cart", ttl_s=-10))
    assert grant.resource == "cart"
    assert grant.expired()


@pytest.mark.parametrize("part", ["payload", "signature"])
def test_tampered_token_is_rejected(part: str):
    t = tokens(SECRET)
    token = t.sign("feed", "u123", "profile")
    t.verify("feed", token)  # a verified token is cached: tampering must still miss
    payload, _, sig = token.rpartition(".")
    if part == "payload":
        bad = flip(payload, len(payload) // 2) + "." + sig
    else:
        bad = payload + "." + flip(sig, len(sig) // 2)
    assert bad != token
    with pytest.raises(BadToken) as info:
        t.verify("feed", bad)
    assert info.value.status == 403
    assert info.value.code == "bad_token"


def test_forged_payload_with_reused_signature_is_rejected():
    t = tokens(SECRET)
    _, _, sig = t.sign("feed", "ada", "profile").rpartition(".")
    forged_payload = base64.urlsafe_b64encode(b'{"u":"grace","r":"profile"}').rstrip(b"=")
    with pytest.raises(BadToken):
        t.verify("feed", forged_payload.decode() + "." + sig)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_token_is_rejected(cut: int):
    t = tokens(SECRET)
    token = t.sign("feed", "u123", "profile")
    with pytest.raises(BadToken):
        t.verify("feed", token[:-cut])


def test_wrong_purpose_is_rejected():
    t = tokens(SECRET)
    token = t.sign("feed", "u123", "profile")
    t.verify("feed", token)
    with pytest.raises(BadToken):
        t.verify("image", token)
    with pytest.raises(BadToken):
        t.verify("click", token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b", ".", "x" * (MAX_TOKEN_LENGTH + 1)])
def test_garbage_is_rejected(token: str):
    with pytest.raises(BadToken):
        tokens(SECRET).verify("feed", token)


def test_token_from_another_key_is_rejected():
    token = tokens("some-other-key-0123456789-abcdefghijklmn").sign("feed", "u1", "profile")
    with pytest.raises(BadToken):
        tokens(SECRET).verify("feed", token)


def test_key_rotation():
    old_only = tokens(OLD_SECRET)
    rotated = tokens(NEW_SECRET, OLD_SECRET)
    new_only = tokens(NEW_SECRET)

    old_token = old_only.sign("feed", "u1", "cart")
    assert rotated.verify("feed", old_token).user_id == "u1"  # old links keep working

    new_token = rotated.sign("feed", "u1", "cart")
    assert new_only.verify("feed", new_token).resource == "cart"  # signed with the first key
    with pytest.raises(BadToken):
        old_only.verify("feed", new_token)

    with pytest.raises(BadToken):  # the old key is removed: its tokens die
        new_only.verify("feed", old_token)


def test_no_keys_is_an_error():
    with pytest.raises(ValueError, match="at least one secret key"):
        Tokens(())


def test_unknown_purpose_cannot_sign():
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens(SECRET).sign("email", "u1", "x")


def test_purposes_use_different_salts():
    t = tokens(SECRET)
    assert t.sign("feed", "u1", "x") != t.sign("image", "u1", "x")


# --- the feed endpoint's answers to bad tokens -------------------------------------------


async def test_feed_with_valid_token(client):
    r = await client.get(feed_url("profile", "ada"))
    assert r.status_code == 200
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}
    assert "x-kairos-fallback" not in r.headers


@pytest.mark.parametrize("part", ["payload", "signature"])
async def test_feed_with_tampered_token_is_403(client, part: str):
    token = tokens(SECRET).sign("feed", "ada", "profile")
    payload, _, sig = token.rpartition(".")
    bad = (
        flip(payload, len(payload) // 2) + "." + sig
        if part == "payload"
        else payload + "." + flip(sig, len(sig) // 2)
    )
    r = await client.get("/v1/feeds/profile", params={"t": bad})
    assert_error(r, 403, "bad_token")


async def test_feed_with_truncated_token_is_403(client):
    token = tokens(SECRET).sign("feed", "ada", "profile")
    r = await client.get("/v1/feeds/profile", params={"t": token[:-3]})
    assert_error(r, 403, "bad_token")


async def test_feed_with_image_token_is_403(client):
    token = tokens(SECRET).sign("image", "ada", "profile")
    r = await client.get("/v1/feeds/profile", params={"t": token})
    assert_error(r, 403, "bad_token")


async def test_feed_without_token_is_403(client):
    assert_error(await client.get("/v1/feeds/profile"), 403, "bad_token")
    assert_error(await client.get("/v1/feeds/profile?t="), 403, "bad_token")


async def test_feed_with_oversized_token_is_403(client):
    r = await client.get("/v1/feeds/profile", params={"t": "x" * (MAX_TOKEN_LENGTH + 1)})
    assert_error(r, 403, "bad_token")


async def test_token_for_another_feed_is_403(client):
    r = await client.get(feed_url("profile", "ada", resource="cart"))
    assert_error(r, 403, "bad_token")


@pytest.mark.parametrize("feed", ["profile", "cart", "recommendations"])
async def test_expired_token_serves_fallback(client, feed: str):
    r = await client.get(feed_url(feed, "ada", ttl_s=-1))
    assert r.status_code == 200
    assert r.headers["x-kairos-fallback"] == "expired-token"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.json() == fallback_body(feed)


async def test_unexpired_ttl_token_serves_data(client):
    r = await client.get(feed_url("profile", "ada", ttl_s=3600))
    assert r.status_code == 200
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}


async def test_key_rotation_over_http(settings):
    old_token = tokens(OLD_SECRET).sign("feed", "ada", "profile")

    rotated_app = create_app(settings(KAIROS_SECRET_KEYS=f"{NEW_SECRET},{OLD_SECRET}"))
    async with serve(rotated_app) as client:
        r = await client.get("/v1/feeds/profile", params={"t": old_token})
        assert r.status_code == 200
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}

    new_only_app = create_app(settings(KAIROS_SECRET_KEYS=NEW_SECRET))
    async with serve(new_only_app) as client:
        r = await client.get("/v1/feeds/profile", params={"t": old_token})
        assert_error(r, 403, "bad_token")
        new_token = tokens(NEW_SECRET).sign("feed", "ada", "profile")
        r = await client.get("/v1/feeds/profile", params={"t": new_token})
        assert r.status_code == 200
