"""Click targets as a hostile template author, catalog or ESP might give them: refused
when a link is signed (the render leaves the link out; `kairos sign click` says no), and a
forged token carrying one is never followed. Every target that is accepted, up to the
longest, makes a link that redirects."""

from __future__ import annotations

import pytest
from support import TOKENS

from app.targets import UnsafeTarget, check_target

REFUSED = {
    "javascript": "javascript:alert(document.cookie)",
    "javascript, mixed case": "JaVaScRiPt:alert(1)",
    "data": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "scheme-relative": "//evil.example/",
    "backslashes": "\\\\evil.example\\",
    "https and backslashes": "https:\\\\evil.example\\",
    "backslash in the path": "https://shop.example.com\\@evil.example/",
    "user info": "https://shop.example.com@evil.example/",
    "user and password": "https://user:pass@shop.example.com/",
    "CR LF": "https://shop.example.com/\r\nSet-Cookie: a=b",
    "tab": "https://shop.example.com/\tx",
    "space": "https://shop.example.com/a b",
    "ftp": "ftp://shop.example.com/file",
    "file": "file:///etc/passwd",
    "no host": "https:///path",
    "relative": "/account",
    "over-long": "https://shop.example.com/?" + "q" * 2030,
    "empty": "",
}


@pytest.mark.parametrize("target", REFUSED.values(), ids=REFUSED.keys())
def test_refused_at_signing(target):
    with pytest.raises(UnsafeTarget):
        check_target(target)


@pytest.mark.parametrize("target", REFUSED.values(), ids=REFUSED.keys())
async def test_a_token_carrying_one_is_never_followed(client, target):
    # As if the signing key had signed it anyway (an older release, a forged grant).
    token = TOKENS.sign("click", "ada", target, campaign="spring")
    r = await client.get(f"/c/{token}")
    assert r.status_code != 302 and "location" not in r.headers


@pytest.mark.parametrize("length", [40, 1480, 1700, 2048])
async def test_every_accepted_target_makes_a_link_that_redirects(client, length):
    target = "https://shop.example.com/p?" + "q" * (length - 27)
    assert check_target(target) == target and len(target) == length
    token = TOKENS.sign("click", "a-long-reader-id-0123456789", target, campaign="c" * 100)
    r = await client.get(f"/c/{token}")
    assert r.status_code == 302 and r.headers["location"] == target
