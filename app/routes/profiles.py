"""`/v1/profiles/{user_id}`: CRM sync and privacy requests, behind a Bearer API key."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import BadRequest, Conflict, NotFound, UnsupportedMediaType
from app.events.model import anonymous_reader
from app.http import content_type, parse_json
from app.profiles.schema import (
    Profile,
    check_user_id,
    computed_part,
    merge_patch,
    shown,
    updated_at,
    validate_profile,
    writable_part,
)
from app.responses import JSONResponse
from app.services import Services


def routes(services: Services) -> list[Route]:
    profiles, erasure = services.profiles, services.erasure

    async def get_profile(request: Request) -> Response:
        user_id = check_user_id(request.path_params["user_id"])
        if _flag(request, "anonymous", default=False):
            # The reader an anonymous id's events built, before (or unless) it is merged.
            profile = await profiles.read_through(anonymous_reader(user_id))
            if profile is None:
                raise NotFound("no reader for this anonymous id", code="profile_not_found")
            return JSONResponse({"anonymous_id": user_id, **shown(profile)})
        profile = await profiles.read_through(user_id)
        if profile is None:
            raise NotFound(f"no profile for user {user_id!r}", code="profile_not_found")
        # Evaluated now, from the kept events: a time window ends without a new event.
        segments = (await services.segments.of(user_id, profile)).as_dict()
        return JSONResponse({"user_id": user_id, **shown(profile), "segments": segments})

    async def not_merged(user_id: str) -> None:
        """409 for an id merged into another user: a write there would reach no event."""
        merged = (await services.stores.events.resolve([user_id])).get(user_id)
        if merged is not None:
            raise Conflict(
                "this user id was merged into another user: write that user's profile",
                code="merged_into_another",
            )

    async def put_profile(request: Request) -> Response:
        user_id = check_user_id(request.path_params["user_id"])
        await not_merged(user_id)
        clean = validate_profile(await _json_body(request))

        existed = False

        def replace(current: Profile | None) -> Profile:
            nonlocal existed
            existed = current is not None
            return {**computed_part(current or {}), **clean, "updated_at": updated_at()}

        stored = await profiles.update(user_id, replace)
        # Profile conditions (tier, consent) may have moved its segments: the sweep
        # records them.
        services.segments.notice(user_id)
        status = 200 if existed else 201
        return JSONResponse({"user_id": user_id, **shown(stored or {})}, status_code=status)

    async def patch_profile(request: Request) -> Response:
        user_id = check_user_id(request.path_params["user_id"])
        await not_merged(user_id)
        patch = await _json_body(request)
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object", code="invalid_body")
        validate_profile({k: v for k, v in patch.items() if v is not None})

        def apply(current: Profile | None) -> Profile:
            if current is None:
                raise NotFound(f"no profile for user {user_id!r}", code="profile_not_found")
            merged = merge_patch(writable_part(current), patch)
            clean = validate_profile(merged)
            return {**computed_part(current), **clean, "updated_at": updated_at()}

        stored = await profiles.update(user_id, apply)
        services.segments.notice(user_id)
        return JSONResponse({"user_id": user_id, **shown(stored or {})})

    async def delete_profile(request: Request) -> Response:
        user_id = check_user_id(request.path_params["user_id"])
        suppress = _flag(request, "suppress", default=True)
        if not await erasure.erase(user_id, suppress=suppress):
            message = "no profile for this user"
            if suppress:
                message += "; its events are refused from now on (suppressed)"
            raise NotFound(message, code="profile_not_found")
        return Response(status_code=204)

    handlers = {
        "GET": get_profile,
        "HEAD": get_profile,
        "PUT": put_profile,
        "PATCH": patch_profile,
        "DELETE": delete_profile,
    }

    async def profile(request: Request) -> Response:
        # One route for every method, so a 405 lists them all in `Allow`.
        return await handlers[request.method](request)

    async def lift_suppression(request: Request) -> Response:
        user_id = check_user_id(request.path_params["user_id"])
        if not await erasure.lift(user_id):
            raise NotFound("this id is not suppressed", code="not_suppressed")
        return Response(status_code=204)

    async def erasures(request: Request) -> Response:
        limit = request.query_params.get("limit", "100")
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 1000:
            raise BadRequest("limit must be 1-1000", code="invalid_limit", field="limit")
        entries = await services.stores.backend.erasures(int(limit))
        return JSONResponse({"erasures": entries})

    return [
        Route("/v1/profiles/{user_id}", profile, methods=[m for m in handlers if m != "HEAD"]),
        Route("/v1/suppressions/{user_id}", lift_suppression, methods=["DELETE"]),
        Route("/v1/erasures", erasures, methods=["GET"]),
    ]


def _flag(request: Request, name: str, *, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false", code="invalid_query", field=name)


async def _json_body(request: Request) -> Any:
    media_type = content_type(request.headers)
    if media_type not in ("application/json", "application/merge-patch+json"):
        raise UnsupportedMediaType("send the body as application/json")
    return parse_json(await request.body())
