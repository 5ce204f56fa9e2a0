"""Every operation of /openapi.json fuzzed by schemathesis through the real app: cases
generated from the description the server serves (its examples, its boundaries, random
values, valid and invalid), each security scheme with its key, and a valid signed token
(or a real template or reader) in most fuzzed cases that take one, so the fuzzer
gets past the signature to the work behind it. Every answer: no 5xx, a status, content
type and headers the operation documents, a body its schema allows; a request the
description forbids refused, and one it allows accepted where a schema can say it all.

On the embedded store for every operation, and on a real redis-server for those that
store or read what was stored. Bounded and seeded: the same cases on every run."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from support import API_KEY, TOKENS, RedisServer, serve

from app.app import create_app
from app.openapi import spec
from app.routes.events import SEGMENT_PATHS

SEED = 15
PUBLIC_URL = "https://kairos.example.com"
WRITE_KEY = "test-write-key-0123456789"
# The demo readers (one declined tracking, one personalization too) and one unknown.
READERS = ("ada", "grace", "alan", "hedy", "nobody")
TEMPLATES = ("welcome", "abandoned_cart", "weekly_picks")
CAMPAIGN = "spring"
IMAGE_PARAMS = MappingProxyType(
    {"countdown": {"deadline": "2030-12-24T23:59:59Z"}, "product": {"slot": 0}}
)
# What is stored or read back from the store: fuzzed on Redis too.
STORED = r"^/v1/(profiles|events|suppressions|erasures|segments|campaigns|feeds|render)|^/segment/"
BATCH = "POST /v1/render/batch"


def ndjson_lines_conform(ctx: Any, response: Any, case: Any) -> bool | None:
    """A batch's 200 body, which no JSON schema check reads (NDJSON): a line per input
    line, in order, each a render (`subject`) or its own error (`code`, `message`)."""
    if case.operation.label != BATCH or response.status_code != 200:
        return None
    lines = [json.loads(line) for line in response.content.splitlines() if line.strip()]
    assert [line.get("line") for line in lines] == list(range(1, len(lines) + 1)), lines
    for line in lines:
        error = line.get("error")
        if error is None:
            assert isinstance(line.get("subject"), str), line
        else:
            assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
    return True


CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    ndjson_lines_conform,
)
# Where a check cannot hold, and why. The batch answers 200 once it starts streaming: a
# line the description forbids gets its own error line (ndjson_lines_conform), not a 4xx.
# A schema-valid request may still be refused where the answer rests on more than a JSON
# schema says: renders and previews check an unsubscribe URL is a safe absolute URL or
# a merge tag, and a preview takes exactly one reader; profiles check email addresses,
# locales and time zones; events depend on the store (an erased reader's events are
# refused), on the clock (timestamps within a window of now) and on names (a track
# call's event must name a known type), and Kairos takes no Segment group calls; a
# campaign's `control` must name one of the variants it was sent (the renders' sends).
NOT_FOR = MappingProxyType(
    {
        BATCH: (negative_data_rejection,),
        **dict.fromkeys(
            (
                "POST /v1/render",
                "GET /v1/render/{template}",
                "POST /v1/preview",
                "PUT /v1/profiles/{user_id}",
                "PATCH /v1/profiles/{user_id}",
                "POST /v1/events",
                "GET /v1/campaigns/{campaign}/stats",
                *(f"POST {path}" for path in SEGMENT_PATHS),
            ),
            (positive_data_acceptance,),
        ),
    }
)


def _feed(case: Any, user: str) -> None:
    feed = case.path_parameters.get("feed")
    if isinstance(feed, str):
        case.query = {**case.query, "t": TOKENS.sign("feed", user, feed, campaign=CAMPAIGN)}


def _image(case: Any, user: str) -> None:
    image = case.path_parameters.get("image")
    if isinstance(image, str):
        params = IMAGE_PARAMS.get(image)
        token = TOKENS.sign("image", user, image, campaign=CAMPAIGN, params=params)
        case.query = {**case.query, "t": token}


def _click(case: Any, user: str) -> None:
    target = f"https://shop.example.com/{user}"
    case.path_parameters = {"token": TOKENS.sign("click", "", target, campaign=CAMPAIGN)}
    case.query = {**case.query, "r": TOKENS.sign("reader", user, "", campaign=CAMPAIGN)}


def _pixel(case: Any, user: str) -> None:
    token = TOKENS.sign("pixel", user, "open", campaign=CAMPAIGN, variant="A")
    case.path_parameters = {"token": token}


def _unsubscribe(case: Any, user: str) -> None:
    case.path_parameters = {"token": TOKENS.sign("unsubscribe", user, "email")}


def _template_in_path(case: Any, user: str) -> None:
    case.path_parameters = {"template": TEMPLATES[len(user) % len(TEMPLATES)]}
    case.query = {**case.query, "user_id": user}


def _template_in_body(case: Any, user: str) -> None:
    """A real template and reader, with what else the case asks for only its campaign and
    formats (random profiles and sources are the other cases')."""
    if isinstance(case.body, dict):
        kept = {k: v for k, v in case.body.items() if k in ("campaign", "formats")}
        template = TEMPLATES[len(user) % len(TEMPLATES)]
        case.body = {**kept, "template": template, "user_id": user}


def _reader_in_path(case: Any, user: str) -> None:
    case.path_parameters = {**case.path_parameters, "user_id": user}


# How a case is made valid past its signature (or names a real template or reader).
GRANTS: Mapping[str, Callable[[Any, str], None]] = MappingProxyType(
    {
        "GET /v1/feeds/{feed}": _feed,
        "GET /v1/img/{image}.{format}": _image,
        "GET /c/{token}": _click,
        "GET /v1/px/{token}.gif": _pixel,
        "GET /v1/unsubscribe/{token}": _unsubscribe,
        "POST /v1/unsubscribe/{token}": _unsubscribe,
        "GET /v1/render/{template}": _template_in_path,
        "POST /v1/render": _template_in_body,
        "POST /v1/preview": _template_in_body,
        "GET /v1/profiles/{user_id}": _reader_in_path,
        "PATCH /v1/profiles/{user_id}": _reader_in_path,
        "DELETE /v1/profiles/{user_id}": _reader_in_path,
    }
)


def _granted(case: Any, user: str) -> Any:
    GRANTS[case.operation.label](case, user)
    return case


def _encoded(case: Any) -> dict[str, Any]:
    """The body gzipped when the case says it is: schemathesis sends a generated
    `Content-Encoding` header as it is, but not the body it names."""
    encodings = [v for k, v in (case.headers or {}).items() if k.lower() == "content-encoding"]
    if not encodings or encodings[0] not in ("gzip", "x-gzip"):
        return {}
    sent = case.as_transport_kwargs()
    body = json.dumps(sent["json"]) if "json" in sent else sent.get("data")
    if body is None:
        return {}
    return {"data": gzip.compress(body.encode() if isinstance(body, str) else body)}


def _real_template(case: Any) -> None:
    """The coverage phase (boundaries, then one wrong value at a time) names template "0"
    and reader "0" in every case, so each stopped at 404: a real template and reader
    instead, but for the one the case tests."""
    meta = case.meta
    if meta is None or meta.phase.name.value != "coverage":
        return
    data = meta.phase.data
    tested = f"{data.location} {data.parameter}"
    real = {"template": TEMPLATES[0], "user_id": READERS[0]}
    real = {name: value for name, value in real.items() if name not in tested}
    if "template" in case.path_parameters:
        path = {k: real.get(k, v) for k, v in case.path_parameters.items()}
        case.path_parameters = path
        case.query = {k: real.get(k, v) for k, v in case.query.items()}
    elif isinstance(case.body, dict):
        case.body = {k: real.get(k, v) for k, v in case.body.items()}


def fuzz(case: Any, app: Starlette) -> None:
    if case.operation.label in GRANTS:
        _real_template(case)
    excluded = list(NOT_FOR.get(case.operation.label, ()))
    case.call_and_validate(app=app, checks=list(CHECKS), excluded_checks=excluded, **_encoded(case))


# Each security scheme with its key: schemathesis sends them, and leaves them out or
# spoils them in the cases that test refusals.
KEYS = {
    "bearer": {"bearer": API_KEY},
    "writeKey": {"bearer": WRITE_KEY},
    "writeKeyBasic": {"username": WRITE_KEY, "password": ""},
}
# The document `GET /openapi.json` serves (test_the_fuzzed_description_is_the_served_one
# keeps the two equal), loaded at collection so that each operation is a test of its own.
CONFIG = schemathesis.Config.from_dict({"seed": SEED, "auth": {"openapi": KEYS}})
schema = schemathesis.openapi.from_dict(spec(PUBLIC_URL), config=CONFIG)


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    """A batch's body: the generated render request as its one line."""
    return json.dumps(value).encode() + b"\n"


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    if case.operation.label not in GRANTS:
        return st.just(case)
    # Three in four granted: the coverage phase already sends many a wrong one.
    granted = st.sampled_from(READERS).map(lambda u: _granted(case, u))
    return st.one_of(st.just(case), granted, granted, granted)


@pytest.fixture(scope="module")
def embedded_app(module_settings: Any) -> Iterator[Starlette]:
    """The demo app on the embedded store; schemathesis starts its lifespan at its first
    request, and it is stopped here."""
    try:
        yield create_app(module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_WRITE_KEYS=WRITE_KEY))
    finally:
        asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def redis_app(module_settings: Any, redis_server: RedisServer) -> Iterator[Starlette]:
    """The demo app on the session's redis-server, emptied first."""
    with redis_server.client() as r:
        r.flushdb()
    settings = module_settings(
        KAIROS_PUBLIC_URL=PUBLIC_URL,
        KAIROS_WRITE_KEYS=WRITE_KEY,
        REDIS_URL=redis_server.url,
        KAIROS_DEMO_DATA="true",
    )
    try:
        yield create_app(settings)
    finally:
        asgi.shutdown_lifespans()


BOUNDED = hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much],
)


@schema.parametrize()
@BOUNDED
def test_every_operation_answers_as_described(case: Any, embedded_app: Starlette) -> None:
    fuzz(case, embedded_app)


# On Redis: the stored operations, less the CORS preflights and the one-letter Segment
# paths (the same handlers as the named calls, fuzzed on the embedded store).
stored = (
    schema.include(path_regex=STORED)
    .exclude(method="OPTIONS")
    .exclude(path_regex=r"^/segment/v1/[a-z]$")
)


@stored.parametrize()
@BOUNDED
def test_every_stored_operation_answers_as_described_on_redis(
    case: Any, redis_app: Starlette
) -> None:
    fuzz(case, redis_app)


async def test_the_fuzzed_description_is_the_served_one(settings: Any) -> None:
    async with serve(create_app(settings(KAIROS_PUBLIC_URL=PUBLIC_URL))) as client:
        served = (await client.get("/openapi.json")).json()
    assert served == spec(PUBLIC_URL)


# What the fuzzer found, replayed as it found it: each answer now as described, and the
# body allowed by the description exactly when the server takes it (None: the body is
# not what is wrong).
FOUND = (
    # Content-Encoding: gzip on a body that is not: 400 an Error alone, which the schema
    # of a Segment call's 400 forbade (it asked for the counts too).
    ("/segment/v1/track", {"Content-Encoding": "gzip"}, {"messageId": "f1"}, 400, None),
    # A field the call ignores, of the wrong type: accepted, which the schema forbade.
    ("/segment/v1/identify", {}, {"messageId": "f2", "userId": "ada", "event": False}, 400, False),
    ("/segment/v1/page", {}, {"messageId": "f3", "userId": "ada", "traits": []}, 400, False),
    # An empty messageId: refused, which the schema allowed.
    ("/segment/v1/track", {}, {"messageId": "", "userId": "ada", "event": "Signed Up"}, 400, False),
    # A null profile, campaign or unsubscribe URL: read as absent, which the schema forbade.
    ("/v1/render", {}, {"template": "welcome", "user_id": "ada", "profile": None}, 200, True),
    ("/v1/render", {}, {"template": "welcome", "user_id": "ada", "campaign": None}, 200, True),
    # An empty user_id or unsubscribe URL: refused, which the schema allowed.
    ("/v1/render", {}, {"template": "welcome", "user_id": ""}, 422, False),
    (
        "/v1/render",
        {},
        {"template": "welcome", "user_id": "ada", "unsubscribe_url": ""},
        422,
        False,
    ),
)


@pytest.mark.parametrize(("path", "headers", "body", "status", "allowed"), FOUND)
def test_what_the_fuzzer_found_is_answered_as_described(
    embedded_app: Starlette,
    path: str,
    headers: dict[str, str],
    body: Any,
    status: int,
    allowed: bool | None,
) -> None:
    operation = schema[path]["POST"]
    sent = {"Authorization": f"Bearer {API_KEY}", **headers}
    case = operation.Case(headers=sent, body=body, media_type="application/json")
    response = case.call(app=embedded_app)
    assert response.status_code == status, response.text
    case.validate_response(response, checks=list(CHECKS))
    if allowed is not None:
        described = operation.definition.raw["requestBody"]["content"]["application/json"]
        document = {**described["schema"], "components": schema.raw_schema["components"]}
        assert jsonschema_rs.Draft202012Validator(document).is_valid(body) == allowed
