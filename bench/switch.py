"""The faults bench/load.py swaps in, as a process of their own (so that their work is
not the load generator's): SIGUSR1 turns the fault on, SIGUSR2 off.

    python bench/switch.py redis LISTEN_PORT REDIS_PORT
        a TCP proxy in front of Redis; fault on: a black hole (connections accepted and
        never answered, the open ones no longer forwarded), off: forwarding again
        (the connections held in the hole are closed: their replies are lost)
    python bench/switch.py upstream LISTEN_PORT
        a recommendation model (POST: a JSON list of skus); fault on: it hangs (reads
        the request, never answers)

Not a bench itself; it prints one line, `ready`, once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop

CHUNK = 65_536
# What the fake model ranks first: products every bench catalog has.
RECS_ANSWER = b'["LD-000", "LD-001", "LD-002", "LD-003"]'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Switch:
    def __init__(self) -> None:
        self.fault = False
        self.held: set[asyncio.StreamWriter] = set()
        self.changed = asyncio.Event()

    def set(self, fault: bool) -> None:
        self.fault = fault
        if not fault:
            for writer in self.held:
                writer.close()
            self.held.clear()
        self.changed.set()
        self.changed = asyncio.Event()


async def _hold(switch: Switch, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and drop everything until the fault ends (then the connection is closed)."""
    switch.held.add(writer)
    with contextlib.suppress(OSError):
        while await reader.read(CHUNK):
            pass
    switch.held.discard(writer)
    writer.close()


async def _pump(
    switch: Switch, src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: asyncio.StreamWriter
) -> None:
    try:
        while True:
            data = await src.read(CHUNK)
            if not data:
                break
            if switch.fault:
                # Black-holed mid-connection: nothing more goes through, either way.
                await _hold(switch, src, held)
                break
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()


def redis_proxy(switch: Switch, target: int) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if switch.fault:
            await _hold(switch, reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:  # Redis is down: so is this connection
            writer.close()
            return
        await asyncio.gather(
            _pump(switch, reader, up_writer, writer), _pump(switch, up_reader, writer, writer)
        )

    return handle


def upstream(switch: Switch) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                if switch.fault:
                    await _hold(switch, reader, writer)
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(RECS_ANSWER), RECS_ANSWER)
                )
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()

    return handle


async def main(argv: list[str]) -> None:
    role, listen, *rest = argv
    switch = Switch()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, switch.set, True)
    loop.add_signal_handler(signal.SIGUSR2, switch.set, False)
    handler = redis_proxy(switch, int(rest[0])) if role == "redis" else upstream(switch)
    server = await asyncio.start_server(handler, "127.0.0.1", int(listen))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1:]))
