"""`kairos sign`: signed open-time URLs under the public URL."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlencode

from app import images
from app.cli.common import settings as load_settings
from app.links import Links, LinkSigner
from app.profiles.schema import check_user_id
from app.settings import ConfigError, Settings
from app.targets import UnsafeTarget, check_target
from app.tokens import MAX_TTL_S, Tokens


def _links(settings: Settings, args: argparse.Namespace) -> Links:
    """The signed URLs of `args.user` (and `args.campaign`) under the public URL."""
    signer = LinkSigner(Tokens(settings.secret_keys), settings.public_url, images.ImageChecks())
    return Links(signer, settings.public_url, args.user, args.campaign, "")


def sign_feed(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_user_id(args.user)
    if args.ttl is not None and not 0 < args.ttl <= MAX_TTL_S:
        raise ConfigError(f"--ttl must be between 1 and {MAX_TTL_S} seconds (ten years)")
    token = Tokens(settings.secret_keys).sign(
        "feed", args.user, args.name, campaign=args.campaign, ttl_s=args.ttl
    )
    print(f"{settings.public_url}/v1/feeds/{args.name}?{urlencode({'t': token})}")
    return 0


def sign_pixel(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_user_id(args.user)
    links = _links(settings, args)
    print(links.pixel())
    return 0


def sign_click(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_user_id(args.user)
    try:
        check_target(args.url)
    except UnsafeTarget as exc:
        print(f"kairos: {exc}", file=sys.stderr)
        return 2
    links = _links(settings, args)
    if args.slot is None:
        print(links.click(args.url))
        return 0
    try:
        print(links.product_click(args.slot, args.url))
    except ValueError as exc:
        print(f"kairos: --slot: {exc}", file=sys.stderr)
        return 2
    return 0


def sign_image(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_user_id(args.user)
    params: dict[str, str] = {}
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"kairos: --param must be KEY=VALUE, not {pair!r}", file=sys.stderr)
            return 2
        params[key.strip()] = value
    links = _links(settings, args)
    try:
        print(links.image(args.name, **params))
    except images.ParamError as exc:
        print(f"kairos: {args.name}: {exc}", file=sys.stderr)
        return 2
    return 0
