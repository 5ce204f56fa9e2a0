"""Hostile values in every path parameter of every route, the routes collected from the
app itself (a new route is covered the day it is added): traversal (`../` encoded every
way, backslashes), NUL, double encoding, over-long values, unicode look-alikes, CR/LF,
empty. Never a 5xx, never a redirect, never a file from outside its folder; every
refusal the JSON error (but the unsubscribe page a reader's browser opens, an HTML page),
with no traceback, machine path or echoed header.

Through the ASGI app first, with the token routes' tokens signed for the hostile name so
that the name itself is what gets looked up; then as raw bytes on a socket to a real
server process, where `../` and NUL reach the server as sent (an HTTP client would
normalize them first)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlencode

import pytest
from starlette.routing import Route
from support import AUTH, TOKENS, KairosProcess, process_env, serve

from app.app import create_app
from app.profiles.schema import USER_ID
from app.settings import PROJECT_ROOT

STATIC = PROJECT_ROOT / "app" / "studio" / "static"
OUTSIDE = (PROJECT_ROOT / "app" / "app.py").read_bytes()[:200]  # what traversal would serve

HOSTILE = {
    "dot-dot slash, encoded": "%2e%2e%2f",
    "dot-dot, encoded slash": "..%2f",
    "dot-dot": "%2e%2e",
    "dot": ".",
    "to /etc/passwd": "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "to app.py": "..%2f..%2fapp.py",
    "backslashes, encoded": "..%5c..%5capp%5capp.py",
    "backslashes": "..\\..\\app\\app.py",
    "NUL": "%00",
    "NUL inside": "a%00b",
    "NUL before a suffix": "studio.js%00.png",
    "double encoding": "%252e%252e%252f",
    "overlong UTF-8 dots": "%c0%ae%c0%ae%2f",
    "invalid UTF-8": "%ff%fe",
    "fullwidth dots and slash": "%ef%bc%8e%ef%bc%8e%ef%bc%8f",
    "two-dot leader": "%e2%80%a5",
    "fullwidth look-alike": "%ef%bd%81da",  # 'ａda'
    "Cyrillic look-alike": "%d0%b0da",  # 'аda'
    "right-to-left override": "%e2%80%aeada",
    "CR LF header injection": "x%0d%0aSet-Cookie:%20injected=1",
    "semicolon path parameter": "..;",
    "space": "%20",
    "markup": "%3cscript%3e",
    "over-long": "a" * 4000,
    "empty": "",
}

# Values for the other parameters of a route, so that only one is hostile at a time.
BENIGN = {"image": "banner", "format": "png", "file": "studio.js"}
FORBIDDEN_IN_BODY = ("Traceback", 'File "', str(PROJECT_ROOT), "/home/", "/root/", "root:x:0")


def cases(app) -> Iterator[tuple[str, str, str]]:
    """(method, path template, parameter) for every path parameter of every route."""
    for route in app.routes:
        if isinstance(route, Route) and route.param_convertors:
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                for name in route.param_convertors:
                    yield method, route.path, name


def request_for(path: str, name: str, value: str) -> str:
    """The path with `value` as `name` (the others benign), and the token a feed or image
    route verifies first, signed for the hostile name itself."""
    url = path
    for param in path.split("{")[1:]:
        other = param.split("}", 1)[0]
        url = url.replace(f"{{{other}}}", value if other == name else BENIGN.get(other, "ada"))
    decoded = unquote(value)
    if path.startswith("/v1/feeds/"):
        url += "?" + urlencode({"t": TOKENS.sign("feed", "ada", decoded)})
    elif path.startswith("/v1/img/"):
        resource = decoded if name == "image" else "banner"
        url += "?" + urlencode({"t": TOKENS.sign("image", "ada", resource)})
    return url


def may_succeed(name: str, value: str) -> bool:
    """Whether `value` is a valid name for the parameter: a user id of dots (`..`) is a
    valid opaque id, and the profile routes answer for it (404 or an erasure's 204)."""
    return name == "user_id" and USER_ID.fullmatch(unquote(value)) is not None


def problems(method: str, path: str, name: str, value: str, r) -> list[str]:
    found = []
    where = f"{method} {path} {name}={value[:40]!r}: {r.status_code}"
    if r.status_code >= 500:
        found.append(f"{where}: a server error")
    elif r.status_code < 400 and not may_succeed(name, value):
        found.append(f"{where}: not refused")
    elif r.status_code >= 400 and r.headers.get("content-type", "").startswith("text/html"):
        # Only the unsubscribe page a reader's browser opens refuses in HTML.
        if (method, path, r.status_code) != ("GET", "/v1/unsubscribe/{token}", 403):
            found.append(f"{where}: an HTML answer")
    elif r.status_code >= 400:
        if not r.headers.get("content-type", "").startswith("application/json"):
            found.append(f"{where}: not JSON ({r.headers.get('content-type')})")
        else:
            error = r.json().get("error", {})
            if not (isinstance(error, dict) and error.get("code") and error.get("message")):
                found.append(f"{where}: not the error shape: {r.text[:100]}")
    text = r.text
    found += [f"{where}: the body shows {bad!r}" for bad in FORBIDDEN_IN_BODY if bad in text]
    if OUTSIDE in r.content:
        found.append(f"{where}: served app/app.py")
    if "injected" in r.headers.get("set-cookie", ""):
        found.append(f"{where}: a header injected")
    return found


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
async def test_every_path_parameter_refuses_a_hostile_value(settings, value):
    app = create_app(settings())
    found: list[str] = []
    async with serve(app, raise_app_exceptions=False) as client:
        routes = list(cases(app))
        assert len(routes) >= 15, routes  # every route with a path parameter, found
        for method, path, name in routes:
            body = b"{}" if method in ("PUT", "PATCH", "POST") else None
            headers = {**AUTH, "Content-Type": "application/json"}
            url = request_for(path, name, value)
            r = await client.request(method, url, headers=headers, content=body)
            found += problems(method, path, name, value, r)
    assert not found, "\n".join(found)


async def test_the_studios_files_are_served_and_nothing_else(settings):
    app = create_app(settings())
    async with serve(app) as client:
        for file in STATIC.iterdir():
            r = await client.get(f"/designer/static/{file.name}")
            assert r.status_code == 200, file.name
            assert r.content == file.read_bytes()
        for name in ("app.py", "..%2fpage.py", "__init__.py", "%2e", "%2e%2e", "STUDIO.JS"):
            r = await client.get(f"/designer/static/{name}")
            assert r.status_code == 404, name


# --- raw requests to a real server ---------------------------------------------------------

RAW = {
    "dot segments to the app's source": b"/designer/static/../../app.py",
    "dot segments to /etc/passwd": b"/designer/static/../../../../../../etc/passwd",
    "dot segments after a real file": b"/designer/static/studio.js/../../../app.py",
    "dot segments in a feed": b"/v1/feeds/../../../etc/passwd",
    "dot segments in a profile": b"/v1/profiles/../../etc/passwd",
    "dot segments in an image": b"/v1/img/../../app.py",
    "encoded dot segments": b"/designer/static/%2e%2e/%2e%2e/app.py",
    "encoded slashes": b"/designer/static/..%2f..%2fapp.py",
    "backslashes": b"/designer/static/..\\..\\app.py",
    "encoded backslashes": b"/designer/static/..%5c..%5capp.py",
    "a lone dot-dot": b"/designer/static/..",
    "NUL": b"/designer/static/studio.js\x00.png",
    "encoded NUL": b"/designer/static/studio.js%00.png",
    "raw UTF-8 look-alikes": "/designer/static/．．／app.py".encode(),
    "a tab": b"/designer/static/\t..",
    "no leading slash": b"designer/static/../../app.py",
    "over-long": b"/v1/profiles/" + b"a" * 40_000,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KairosProcess]:
    tmp = tmp_path_factory.mktemp("path-params")
    env = process_env(tmp, "", "test-write-key-0123456789")
    env.pop("REDIS_URL")
    process = KairosProcess("path-params", env, tmp)
    try:
        process.wait_ready(time.monotonic() + 30)
        yield process
    finally:
        process.stop()


def raw_get(port: int, target: bytes) -> tuple[int, dict[str, str], bytes]:
    """One GET of `target`, exactly as given: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: kairos.test\r\n"
            b"Authorization: " + AUTH["Authorization"].encode() + b"\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


@pytest.mark.parametrize("target", RAW.values(), ids=RAW.keys())
def test_a_raw_hostile_path_gets_a_json_4xx_from_a_real_server(server, target):
    status, headers, body = raw_get(server.port, target)
    assert 400 <= status < 500, (status, body[:200])
    assert headers["content-type"].startswith("application/json"), (headers, body[:200])
    assert body.startswith(b'{"error":{"code":'), body[:200]
    assert OUTSIDE not in body
    for bad in FORBIDDEN_IN_BODY:
        assert bad.encode() not in body


def test_the_real_server_serves_a_studio_file_as_asked(server):
    status, headers, body = raw_get(server.port, b"/designer/static/studio.js")
    assert status == 200 and body == (STATIC / "studio.js").read_bytes()
