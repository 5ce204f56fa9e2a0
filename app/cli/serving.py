"""`kairos serve`: the HTTP server under uvicorn."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import settings as load_settings
from app.settings import ConfigError
from app.studio.live import studio_on

if TYPE_CHECKING:
    from socket import socket

    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

STUDIO_STREAMS_WAIT_S = 3
METRICS_DIR_VAR = "KAIROS_METRICS_DIR"


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
    options: dict[str, Any] = dict(
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
    if workers == 1:
        uvicorn.run("app.app:factory", **options)
    else:
        _run_workers(uvicorn.Config("app.app:factory", **options))
    return 0


def _run_workers(config: Config) -> None:
    """uvicorn's workers, sharing a fresh private metrics folder (mode 0700) that is
    removed when they are done: a scrape of any worker answers for all of them."""
    folder = Path(tempfile.mkdtemp(prefix="kairos-metrics-"))
    # The workers are spawned: they read their settings from this environment.
    os.environ[METRICS_DIR_VAR] = str(folder)
    try:
        sock = config.bind_socket()
        _supervisor(config, sock, folder).run()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _supervisor(config: Config, sock: socket, folder: Path) -> Multiprocess:
    from uvicorn.supervisors import Multiprocess

    from app.metrics_shared import mark_dead

    class Supervisor(Multiprocess):
        """uvicorn's supervisor; a worker that is gone (died, restarted, retired) has
        its live gauges dropped, its counters kept in the sums."""

        pids: frozenset[int] = frozenset()

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            pids = frozenset(p.pid for p in self.processes if p.pid is not None)
            for pid in self.pids - pids:
                mark_dead(folder, pid)
            self.pids = pids

    return Supervisor(config, sockets=[sock])
