"""The batch engine (app/render/batch.py) on its own, without HTTP or templates: the
request read ahead of its renders (in order, within its byte limit, an error while
reading after the lines read before it, the reading stopped when its reader leaves or is
cancelled), the request's lines, the sends, and the answers: one line per reader, in
order, bad lines answered with their error and the batch going on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
import pytest

from app.errors import Unprocessable
from app.profiles.cache import Lookup
from app.render import batch
from app.render.result import RenderResult

LINE = b"x" * 99  # 99 bytes, a line without its newline


class Source:
    """Lines for `read_ahead`, recording how many were produced and how it ended."""

    def __init__(
        self, count: int, *, fail: bool = False, then_wait: bool = False, line: bytes = LINE
    ) -> None:
        self.count, self.fail, self.then_wait, self.line = count, fail, then_wait, line
        self.produced = 0
        self.closed = asyncio.Event()
        self.ended_by: type[BaseException] | None = None

    async def lines(self) -> AsyncGenerator[bytes, None]:
        try:
            for _ in range(self.count):
                self.produced += 1
                yield self.line
                await asyncio.sleep(0)
            if self.fail:
                raise Unprocessable("a batch line is too long")
            if self.then_wait:
                await asyncio.Event().wait()  # a client that sends nothing more
        except BaseException as exc:
            self.ended_by = type(exc)
            raise
        finally:
            self.closed.set()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


# --- read ahead ----------------------------------------------------------------------


async def test_read_ahead_hands_every_line_on_in_order():
    async def numbered() -> AsyncGenerator[bytes, None]:
        for i in range(500):
            yield b"%d" % i

    got = [line async for line in batch.read_ahead(numbered(), 1_000)]
    assert got == [b"%d" % i for i in range(500)]


async def test_read_ahead_reads_no_more_than_its_limit_while_nothing_is_taken():
    source = Source(1000)
    lines = batch.read_ahead(source.lines(), 1_000)
    assert await lines.__anext__() == LINE
    await settle()
    # The line taken, 11 lines of 99 bytes (the last goes over the limit), and the one
    # made that waits for room.
    assert source.produced == 1 + 11 + 1
    for _ in range(20):  # taking lines makes room for as many more
        await lines.__anext__()
    await settle()
    assert source.produced == 21 + 11 + 1
    await asyncio.wait_for(lines.aclose(), 1)


async def test_an_error_while_reading_comes_out_after_the_lines_read_before_it():
    source = Source(50, fail=True)
    got = []
    with pytest.raises(Unprocessable, match="too long"):
        async for line in batch.read_ahead(source.lines(), 10_000):
            got.append(line)
    assert len(got) == 50


async def test_leaving_early_closes_the_lines_and_stops_the_reading():
    source = Source(1000)
    lines = batch.read_ahead(source.lines(), 1_000)
    await lines.__anext__()
    await settle()  # the reading waits for room
    await asyncio.wait_for(lines.aclose(), 1)  # a client gone
    # Closed by then, not left to the garbage collector.
    assert source.closed.is_set() and source.ended_by is GeneratorExit
    assert source.produced < 20


async def test_a_cancel_of_the_reader_of_the_lines_reaches_the_reading():
    source = Source(3, then_wait=True)
    taken: list[bytes] = []

    async def take() -> None:
        async for line in batch.read_ahead(source.lines(), 10_000):
            taken.append(line)

    task = asyncio.create_task(take())
    await settle()
    assert len(taken) == 3 and not task.done()  # waiting for a line that does not come
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert source.closed.is_set()
    assert source.ended_by is asyncio.CancelledError


# --- the request's lines and the sends -----------------------------------------------


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_request_lines_are_cut_at_newlines_across_the_chunks():
    stream = chunks(b'{"a":', b"1}\n\n{", b'"b":2}\n{"c":3}')
    got = [line async for line in batch.request_lines(stream)]
    assert got == [b'{"a":1}', b"", b'{"b":2}', b'{"c":3}']
    assert [line async for line in batch.request_lines(chunks())] == []


async def test_a_request_line_over_the_limit_is_refused_without_waiting_for_its_end():
    piece = b"y" * (batch.MAX_LINE_BYTES // 2)
    with pytest.raises(Unprocessable, match="longer than"):
        async for _ in batch.request_lines(chunks(b"ok\n", piece, piece, piece, b"\n")):
            pass


@pytest.mark.parametrize(
    "sizes", [[50_000] * 7, [100] * 500, [200_000, 10, 200_000, 90_000, 90_000], []]
)
def test_answers_go_out_in_sends_of_whole_lines_of_at_least_128_kb(sizes):
    answers = [b"x" * (size - 1) + b"\n" for size in sizes]
    sends = list(batch.sends(answers))
    assert b"".join(sends) == b"".join(answers)  # every line, in order
    assert all(send.endswith(b"\n") for send in sends)  # whole lines only
    assert all(len(send) >= batch.SEND_BYTES for send in sends[:-1])
    # No send holds more lines than it needs to reach the size.
    for send in sends:
        lines = send.splitlines(keepends=True)
        assert sum(map(len, lines[:-1])) < batch.SEND_BYTES


# --- the answers ---------------------------------------------------------------------


class Renders:
    """Stands in for the renderer: answers each reader with its name as the text part;
    "boom" fails with a bug, stored profiles are looked up."""

    def __init__(self) -> None:
        self.lookups: list[list[str]] = []  # per gather: the user ids looked up together
        self.waiting: list[str] = []

    async def lookup(self, user_id: str) -> Lookup:
        self.waiting.append(user_id)
        await asyncio.sleep(0)
        if self.waiting:
            self.lookups.append(self.waiting)
            self.waiting = []
        return Lookup({"first_name": user_id.title()}, "store")

    async def render(
        self, template: str, user_id: str, *, profile: Any = None, lookup: Any = None, **_: Any
    ) -> RenderResult:
        if user_id == "boom":
            raise RuntimeError("a bug")
        name = (profile or lookup.profile)["first_name"]
        return RenderResult("s", "p", None, None, f"{template}:{name}", [], "A")


async def answer_lines(lines: list[bytes], renders: Any, template: str | None = "t") -> list[Any]:
    async def source() -> AsyncGenerator[bytes, None]:
        for line in lines:
            yield line

    out = b"".join([data async for data in batch.batch_answers(source(), template, renders)])
    return [orjson.loads(line) for line in out.splitlines()]


async def test_every_reader_is_answered_in_order_and_bad_lines_with_their_error():
    renders = Renders()
    lines = [
        b'{"user_id": "ada"}',
        b"",  # blank: skipped, still counted
        b"not json",
        b'{"user_id": "grace", "profile": {"first_name": "Inline"}}',
        b'{"user_id": "a b"}',
        b'{"user_id": "boom", "profile": {}}',
        b'{"user_id": "alan", "template": "other"}',
    ]
    answers = await answer_lines(lines, renders)
    assert [a["line"] for a in answers] == [1, 3, 4, 5, 6, 7]
    assert [a["user_id"] for a in answers] == ["ada", None, "grace", "a b", "boom", "alan"]
    assert answers[0]["text"] == "t:Ada" and answers[2]["text"] == "t:Inline"
    assert answers[5]["text"] == "other:Alan"
    assert answers[1]["error"]["code"] == "invalid_json"
    assert answers[3]["error"]["field"] == "user_id"
    assert answers[4]["error"] == {
        "code": "internal",
        "message": "this reader could not be rendered",
    }
    # The stored profiles of a chunk are looked up together, those of readers sent
    # inline too (an opt-out recorded here wins over an inline copy).
    assert renders.lookups == [["ada", "grace", "boom", "alan"]]


async def test_a_batch_is_rendered_in_chunks():
    renders = Renders()
    lines = [b'{"user_id": "r%d"}' % i for i in range(batch.BATCH_CHUNK * 2 + 3)]
    answers = await answer_lines(lines, renders)
    assert [a["line"] for a in answers] == list(range(1, len(lines) + 1))
    assert [len(group) for group in renders.lookups] == [batch.BATCH_CHUNK] * 2 + [3]


async def test_an_error_while_reading_is_the_last_line_after_the_lines_before_it():
    async def source() -> AsyncGenerator[bytes, None]:
        yield b'{"user_id": "ada"}'
        yield b'{"user_id": "grace"}'
        raise Unprocessable("a batch line is longer than 262144 bytes")

    out = b"".join([d async for d in batch.batch_answers(source(), "t", Renders())])
    answers = [orjson.loads(line) for line in out.splitlines()]
    assert [a["line"] for a in answers] == [1, 2, 3]
    assert [a.get("text") for a in answers[:2]] == ["t:Ada", "t:Grace"]
    assert answers[2]["user_id"] is None and "longer than" in answers[2]["error"]["message"]


async def test_a_batch_left_early_stops_reading_its_request():
    source = Source(10_000, line=b'{"user_id": "ada"}')
    answers = batch.batch_answers(source.lines(), "t", Renders())
    assert await answers.__anext__()  # the first chunk's answers
    await asyncio.wait_for(answers.aclose(), 1)  # the client is gone
    assert source.closed.is_set() and source.produced < 10_000
