"""The pipelined Redis client of the request path, against the real Redis: ordering under
concurrency, scripts that vanish, connections that die, a server that never answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.admission.resp import PipelinedRedis, RedisError, Script, _encode, _encode_py

URL = "redis://127.0.0.1:6379/11"
ECHO = Script("return {KEYS[1], ARGV[1]}")


@pytest.fixture
async def client():
    redis = PipelinedRedis(URL)
    yield redis
    await redis.aclose()


async def test_concurrent_calls_each_get_their_own_reply(client: PipelinedRedis) -> None:
    replies = await asyncio.gather(*(client.evalsha(ECHO, [f"k{i}"], [i]) for i in range(500)))
    assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(500)]


async def test_calls_made_in_one_turn_of_the_loop_are_written_together(client: PipelinedRedis) -> None:
    await client.call("PING")  # connected
    writer = client._writer
    assert writer is not None
    writes: list[bytes] = []
    write = writer.write

    def counting(data: bytes) -> None:
        writes.append(data)
        write(data)

    writer.write = counting  # type: ignore[method-assign]
    replies = await asyncio.gather(*(client.call("ECHO", f"m{i}") for i in range(100)))
    assert replies == [f"m{i}".encode() for i in range(100)]
    assert len(writes) == 1
    assert writes[0].count(b"ECHO") == 100


async def test_the_url_selects_the_database(client: PipelinedRedis) -> None:
    key = f"resp-test:{uuid.uuid4().hex}"
    await client.call("SET", key, "eleven")
    other = PipelinedRedis("redis://127.0.0.1:6379/10")
    try:
        assert await other.call("GET", key) is None
        assert await client.call("GET", key) == b"eleven"
    finally:
        await client.call("DEL", key)
        await other.aclose()


async def test_a_script_redis_forgot_is_loaded_again(client: PipelinedRedis) -> None:
    assert await client.evalsha(ECHO, ["a"], ["1"]) == [b"a", b"1"]
    await client.call("SCRIPT", "FLUSH")
    assert await client.evalsha(ECHO, ["b"], ["2"]) == [b"b", b"2"]
    await client.call("SCRIPT", "FLUSH")
    assert await client.evalsha_many(ECHO, [(["c"], ["3"]), (["d"], ["4"])]) == [[b"c", b"3"], [b"d", b"4"]]


async def test_an_error_reply_is_raised_and_the_connection_stays_usable(client: PipelinedRedis) -> None:
    with pytest.raises(RedisError, match="not an integer"):
        await client.call("HINCRBY", f"resp-test:{uuid.uuid4().hex}", "field", "many")
    assert await client.call("PING") in (b"PONG", "PONG")


async def test_a_killed_connection_fails_the_calls_in_flight_and_the_next_call_reconnects(client: PipelinedRedis) -> None:
    first_id = await client.call("CLIENT", "ID")
    admin = PipelinedRedis(URL)
    try:
        blocked = asyncio.ensure_future(client.call("BLPOP", f"resp-test:{uuid.uuid4().hex}", 3))  # in flight for 3 s
        await asyncio.sleep(0.05)
        await admin.call("CLIENT", "KILL", "ID", first_id)
        with pytest.raises(ConnectionError):
            await blocked
        assert await client.call("PING") in (b"PONG", "PONG")
        assert await client.call("CLIENT", "ID") != first_id  # a fresh connection
    finally:
        await admin.aclose()


async def test_a_connection_closed_under_a_call_fails_it_and_the_next_call_gets_its_own_reply(client: PipelinedRedis) -> None:
    await client.call("PING")
    blocked = asyncio.ensure_future(client.call("BLPOP", f"resp-test:{uuid.uuid4().hex}", 2))
    await asyncio.sleep(0.05)  # written, waiting for its reply
    writer = client._writer
    assert writer is not None
    writer.transport.abort()  # closed before the reader task has seen it
    assert await asyncio.wait_for(client.call("ECHO", "mine"), 1) == b"mine"
    with pytest.raises(ConnectionError):
        await blocked


async def test_a_server_that_never_answers_times_out_and_is_let_go() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = PipelinedRedis(f"redis://127.0.0.1:{port}", call_timeout_s=0.3)
    try:
        for _ in range(2):  # each call gives up in time; none waits behind a dead one
            with pytest.raises(ConnectionError):
                await redis.call("PING")
    finally:
        await redis.aclose()
        server.close()


async def test_calls_answered_in_time_outlive_the_timeout_of_the_first_one() -> None:
    redis = PipelinedRedis(URL, call_timeout_s=0.2)
    try:
        first_id = await redis.call("CLIENT", "ID")
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < 0.6:  # three timeouts' worth of calls, each in time
            assert await redis.call("PING") in (b"PONG", "PONG")
            await asyncio.sleep(0.03)
        assert await redis.call("CLIENT", "ID") == first_id  # the watchdog never dropped the connection
        with pytest.raises(ConnectionError, match="did not answer within"):
            await redis.call("BLPOP", f"resp-test:{uuid.uuid4().hex}", 1)  # late: Redis holds it for 1 s
    finally:
        await redis.aclose()


async def test_nothing_listening_is_a_connection_error() -> None:
    redis = PipelinedRedis("redis://127.0.0.1:9/0", connect_timeout_s=0.5)
    try:
        with pytest.raises(OSError):  # ConnectionRefusedError, a ConnectionError and OSError
            await redis.call("PING")
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "{p}:t:x", "{p}:b:key:é:m202611", 1764412345123, -1, 0, 15_000_000_000_000),
        ("SET", b"\x00\xffbytes", 1.5, 1e20, 0.1),
        ("PING",),
        ("AUTH", None, True),  # types the C packer refuses: written the Python way, as before
    ],
)
def test_commands_are_packed_as_resp_by_the_c_packer_and_the_python_one_alike(args: tuple) -> None:
    assert _encode(args) == _encode_py(args)
    assert _encode(list(args)) == _encode_py(args)
    assert _encode_py(("SET", "k", 7)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n"
