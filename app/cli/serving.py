"""`kairos serve`: the HTTP server under uvicorn."""

from __future__ import annotations

import argparse

from app.cli.common import settings as load_settings
from app.settings import ConfigError
from app.studio.live import studio_on

STUDIO_STREAMS_WAIT_S = 3


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Fail fast, before any worker starts; and make the development key file now, so
    # that the workers read it rather than race to create it.
    settings = load_settings()
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    workers = settings.workers if args.workers is None else args.workers
    if workers > 1 and settings.redis_url is None:
        raise ConfigError(
            "the embedded store lives inside one process: set REDIS_URL to run "
            f"{workers} workers, or use --workers 1"
        )
    uvicorn.run(
        "app.app:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # httptools with a cap on request heads and deadlines for slow clients.
        http="app.protocol:KairosProtocol",
        # Our own access log leaves out query strings, where tokens travel.
        access_log=False,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        # The studio's pages keep their event streams open: at shutdown, those still
        # open after this long are ended (else the server would wait for the pages).
        timeout_graceful_shutdown=STUDIO_STREAMS_WAIT_S if studio_on(settings) else None,
    )
    return 0
