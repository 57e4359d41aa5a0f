"""One socket per collection across relay processes: the Redis lease, and two services sharing it."""

from __future__ import annotations

import contextlib

from relay.providers.videodb.lease import Lease

from .helpers import ACTIVE, FreezableProxy, running_service, sample, settings_for, wait_until, wait_until_async


async def test_lease_is_exclusive_released_and_expires(redis_client) -> None:
    a = Lease(redis_client, "test:lease", ttl_s=0.3)
    b = Lease(redis_client, "test:lease", ttl_s=0.3)
    assert await a.acquire() and a.held
    assert not await b.acquire() and not b.held
    assert await a.acquire()  # already ours: renewed, still held

    await a.release()
    assert not a.held
    assert await b.acquire()  # a release frees it at once
    assert not await a.renew()  # a cannot renew what it gave up

    # b "dies": it stops renewing. Its own view lapses before the key expires in Redis...
    await wait_until(lambda: not b.held, timeout=2)
    assert await redis_client.get("test:lease") == b.token.encode()
    # ...and a standby takes over once Redis expired it.
    await wait_until_async(a.acquire, timeout=2)
    assert a.held
    assert not await b.renew()  # the dead holder cannot come back on the new holder's lease


async def test_two_services_never_both_hold_and_the_other_takes_over(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    transcripts = collect("relay:events:videodb:*:transcript.*")
    statuses = collect("relay:events:videodb:*:session.status")
    settings = settings_for(emu)
    stacks = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
    try:
        relays = [await stacks[i].enter_async_context(running_service(settings, redis_url)) for i in range(2)]
        await wait_until(lambda: any(r.service.holds("default") for r in relays))
        await emu.wait_connections(1)
        holder = next(i for i, r in enumerate(relays) if r.service.holds("default"))
        standby = 1 - holder
        assert not relays[standby].service.holds("default")

        # The same delivery reaches both replicas; it is processed once, wherever it landed.
        assert await emu.post_webhook(relays[standby].webhook_url, ACTIVE) == [200]
        assert await emu.post_webhook(relays[holder].webhook_url, ACTIVE) == [200]
        await emu.wait_bound("rts-1", "transcript")  # bound by the holder, from the standby's webhook
        await wait_until(lambda: sum(sample(r.metrics, "relay_videodb_webhooks_total", outcome="duplicate") for r in relays) == 1)
        for n in range(3):
            assert await emu.emit("rts-1", "transcript", {"text": f"t{n}", "is_final": True})
        await transcripts.wait_for(3)
        assert len(emu.connection_ids) == 1
        assert sample(relays[holder].metrics, "relay_events_received_total", source="videodb", type="transcript.final") == 3
        assert sample(relays[standby].metrics, "relay_events_received_total", source="videodb", type="transcript.final") == 0

        # The holder stops (a deploy, a crash handled by SIGTERM): the standby takes over and re-binds.
        first = emu.bound_to("rts-1", "transcript")
        await stacks[holder].aclose()
        await wait_until(lambda: relays[standby].service.holds("default"))
        await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
        assert await emu.emit("rts-1", "transcript", {"text": "after takeover", "is_final": True})
        got = await transcripts.wait_for(4)
        assert [e.payload.text for e in got] == ["t0", "t1", "t2", "after takeover"]
        assert len(emu.connection_ids) == 1
        assert emu.peak_connections["default"] == 1
        assert sample(relays[standby].metrics, "relay_videodb_lease_acquired_total", collection="default") == 1
    finally:
        for stack in reversed(stacks):
            await stack.aclose()
    assert [e.payload.status for e in statuses.events] == ["active"]


async def test_a_holder_cut_off_from_redis_gives_way_without_overlap(videodb_emulator, redis_server, redis_url, redis_client, collect) -> None:
    """The holder loses Redis silently (a partition, not a refusal): it must close its socket before
    its lease expires, so the standby's takeover never overlaps it."""
    emu = videodb_emulator
    transcripts = collect("relay:events:videodb:*:transcript.*")
    settings = settings_for(emu)
    async with FreezableProxy("127.0.0.1", redis_server.port) as redis_proxy:
        partitioned_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
        async with running_service(settings, partitioned_url) as a:
            await wait_until(lambda: a.service.holds("default"))
            async with running_service(settings, redis_url) as b:
                assert await emu.post_webhook(b.webhook_url, ACTIVE) == [200]
                first = await emu.wait_bound("rts-1", "transcript")
                redis_proxy.freeze(new_connections_too=True)
                await wait_until(lambda: b.service.holds("default"))
                await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
                assert not a.service.holds("default")
                assert emu.peak_connections["default"] == 1  # never two sockets at once
                assert await emu.emit("rts-1", "transcript", {"text": "from the new holder", "is_final": True})
                assert [e.payload.text for e in await transcripts.wait_for(1)] == ["from the new holder"]
                assert sample(b.metrics, "relay_events_received_total", source="videodb", type="transcript.final") == 1
                redis_proxy.cut()  # the partition heals: a reconnects to Redis and stays standby
                assert emu.peak_connections["default"] == 1
