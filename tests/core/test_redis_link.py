"""RedisPublishLink against a real redis-server: batches, AUTH/SELECT, error replies, timeouts."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from relay.core.redis_link import RedisLinkError, RedisPublishLink, pack_command, publish_head


def publish(channel: str, body: bytes) -> bytes:
    return publish_head(channel) + b"$%d\r\n" % len(body) + body + b"\r\n"


def test_publish_head_is_the_start_of_a_packed_publish() -> None:
    assert publish("ch:1", b"hello") == pack_command(b"PUBLISH", b"ch:1", b"hello")


class Watch:
    """Counts completed batches and remembers why the link was lost; tests wait on events."""

    def __init__(self, link: RedisPublishLink) -> None:
        self.batches = 0
        self.lost = asyncio.Event()
        self.cause: BaseException | None = None
        self._want = 0
        self._enough = asyncio.Event()
        link.on_batch = self._batch
        link.on_lost = self._lost

    def _batch(self) -> None:
        self.batches += 1
        if self.batches >= self._want:
            self._enough.set()

    def _lost(self, exc: BaseException | None) -> None:
        self.cause = exc
        self.lost.set()

    async def wait_batches(self, n: int) -> None:
        self._want = n
        if self.batches < n:
            self._enough.clear()
            await asyncio.wait_for(self._enough.wait(), 5)


async def test_batches_are_published_in_order_and_acknowledged_once_each(redis_url, redis_client) -> None:
    async with redis_client.pubsub() as sub:
        await sub.subscribe("link:test")
        link = await RedisPublishLink.open(redis_url, timeout_s=2)
        watch = Watch(link)
        link.send(b"".join(publish("link:test", b"m%d" % i) for i in range(3)), 3)
        link.send(publish("link:test", b"m3"), 1)
        assert link.batches_in_flight == 2
        await watch.wait_batches(2)
        assert watch.batches == 2 and link.batches_in_flight == 0
        got = []
        while len(got) < 4:
            message = await sub.get_message(ignore_subscribe_messages=True, timeout=5)
            if message is not None:
                got.append(message["data"])
        assert got == [b"m0", b"m1", b"m2", b"m3"]
        link.close()
        await asyncio.wait_for(watch.lost.wait(), 5)
        assert watch.cause is None  # closed by us, nothing in flight


@pytest.fixture
async def acl_user(redis_client):  # type: ignore[no-untyped-def]
    await redis_client.execute_command("ACL", "SETUSER", "linktest", "on", ">s3cret-pw", "~*", "&*", "+@all")
    yield "linktest"
    await redis_client.execute_command("ACL", "DELUSER", "linktest")


async def test_authenticates_and_selects_the_database_of_the_url(redis_url, redis_client, acl_user) -> None:
    port = urlsplit(redis_url).port
    link = await RedisPublishLink.open(f"redis://{acl_user}:s3cret-pw@127.0.0.1:{port}/3", timeout_s=2)
    watch = Watch(link)
    # A write the link's connection makes lands in database 3, as the URL says.
    link.send(pack_command(b"SET", b"link:db", b"3"), 1)
    await watch.wait_batches(1)
    link.close()
    db3 = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    try:
        assert await db3.get("link:db") == b"3"
        await db3.delete("link:db")
    finally:
        await db3.aclose()
    assert await redis_client.get("link:db") is None


async def test_a_wrong_password_fails_to_open_without_naming_it(redis_url, acl_user) -> None:
    port = urlsplit(redis_url).port
    with pytest.raises(RedisLinkError) as failed:
        await RedisPublishLink.open(f"redis://{acl_user}:wrong-pw@127.0.0.1:{port}/0", timeout_s=2)
    assert "WRONGPASS" in str(failed.value)
    assert "wrong-pw" not in str(failed.value)


async def test_nothing_listening_fails_to_open(redis_server) -> None:
    with pytest.raises(OSError):
        await RedisPublishLink.open("redis://127.0.0.1:1/0", timeout_s=2)


async def test_an_error_reply_fails_the_link(redis_url) -> None:
    link = await RedisPublishLink.open(redis_url, timeout_s=2)
    watch = Watch(link)
    link.send(publish("link:test", b"fine") + pack_command(b"NO-SUCH-COMMAND"), 2)
    await asyncio.wait_for(watch.lost.wait(), 5)
    assert isinstance(watch.cause, RedisLinkError) and "unknown command" in str(watch.cause)
    assert watch.batches == 0  # the batch was not acknowledged: its owner sends it again
    with pytest.raises(RedisLinkError):
        link.send(publish("link:test", b"again"), 1)


async def test_a_batch_unanswered_within_the_timeout_fails_the_link(redis_url, redis_client) -> None:
    link = await RedisPublishLink.open(redis_url, timeout_s=0.3)
    watch = Watch(link)
    await redis_client.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
    try:
        link.send(publish("link:test", b"stalled"), 1)
        await asyncio.wait_for(watch.lost.wait(), 5)
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")
    assert isinstance(watch.cause, RedisLinkError) and "did not answer within 0.3 s" in str(watch.cause)
    assert watch.batches == 0
