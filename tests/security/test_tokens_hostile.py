"""Tokens as an attacker handles them, through the real app's routes: missing, flipped,
truncated, re-spelled (padding, unused bits), of another purpose, signed with a key the
server no longer holds, expired, from the future, oversized. The reader is only ever the
token's."""

from __future__ import annotations

import time

import pytest
from support import SECRET, TOKENS, feed_url

from app.settings import Secret
from app.tokens import BadToken, Tokens

GONE = Tokens((Secret("a-key-this-server-never-had-0123456789"),))


def respelled(token: str) -> list[str]:
    """The same bytes in other base64 spellings."""
    body, _, signature = token.rpartition(".")
    spellings = [token + "=", token + "==", f"{body}=.{signature}"]
    for part_index, part in enumerate((body, signature)):
        unused = {2: 4, 3: 2}.get(len(part) % 4)
        if unused:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            value = alphabet.index(part[-1]) | 1  # flip an unused bit on
            changed = part[:-1] + alphabet[value]
            spellings.append(f"{changed}.{signature}" if part_index == 0 else f"{body}.{changed}")
    return spellings


def forged(token: str) -> dict[str, str]:
    body, _, signature = token.rpartition(".")
    flip = "A" if signature[-2] != "A" else "B"
    return {
        "missing": "",
        "flipped signature": f"{body}.{signature[:-2]}{flip}{signature[-1]}",
        "flipped payload": f"{body[:5]}{'A' if body[5] != 'A' else 'B'}{body[6:]}.{signature}",
        "truncated": token[:-4],
        "signature only": signature,
        "payload only": body,
        "two dots": f"{body}..{signature}",
        "oversized": "A" * 5000 + "." + signature,
        "removed key": GONE.sign("feed", "ada", "cart"),
        "another purpose": TOKENS.sign("image", "ada", "cart"),
        **{f"respelled {i}": t for i, t in enumerate(respelled(token))},
    }


CASES = list(forged(TOKENS.sign("feed", "ada", "cart")).items())


@pytest.mark.parametrize(("name", "token"), CASES, ids=[name for name, _ in CASES])
async def test_a_forged_feed_token_gets_nothing(client, name, token):
    r = await client.get("/v1/feeds/cart", params={"t": token})
    assert r.status_code in (403, 404), (name, r.status_code)
    assert "Ada" not in r.text


@pytest.mark.parametrize(("name", "token"), CASES, ids=[name for name, _ in CASES])
def test_verify_refuses_each(name, token):
    with pytest.raises(BadToken):
        TOKENS.verify("feed", token)


def test_a_respelled_token_is_refused_even_after_the_real_one_verified():
    token = TOKENS.sign("click", "ada", "https://shop.example.com/")
    assert TOKENS.verify("click", token).user_id == "ada"
    for other in respelled(token):
        with pytest.raises(BadToken):
            TOKENS.verify("click", other)


def test_expired_and_future_dated_grants():
    expired = TOKENS.sign("feed", "ada", "cart", ttl_s=-10)
    assert TOKENS.verify("feed", expired).expired()
    future = TOKENS.sign("feed", "ada", "cart", ttl_s=10**6)
    assert not TOKENS.verify("feed", future).expired(time.time())


async def test_the_reader_comes_only_from_the_token(client):
    await client.put(
        "/v1/profiles/ada",
        json={"first_name": "Ada"},
        headers={"Authorization": "Bearer test-api-key-0123456789"},
    )
    await client.put(
        "/v1/profiles/bob",
        json={"first_name": "Bob"},
        headers={"Authorization": "Bearer test-api-key-0123456789"},
    )
    url = feed_url("profile", "ada")
    for extra in ("&user_id=bob", "&u=bob", "&reader=bob"):
        r = await client.get(url + extra, headers={"X-User-Id": "bob", "Cookie": "user_id=bob"})
        assert r.status_code == 200
        assert "Bob" not in r.text


def test_the_tests_secret_is_the_servers():
    assert Tokens((Secret(SECRET),)).verify("feed", TOKENS.sign("feed", "a", "cart")).user_id == "a"
