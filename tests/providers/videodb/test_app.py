"""The VideoDB bridge inside the real relay app (app factory, uvicorn, settings), end to end."""

from __future__ import annotations

from .helpers import ACTIVE, API_KEY


async def test_relay_app_runs_the_bridge_and_serves_its_webhook(videodb_emulator, start_relay, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*")
    relay = await start_relay(
        videodb={
            "enabled": True,
            "base_url": emu.base_url,
            "api_key": API_KEY,
            "collections": ["default"],
            "sync_interval_s": 0.1,
            "lease_ttl_s": 2.0,
        }
    )
    await emu.wait_connections(1)
    assert await emu.post_webhook(relay.http_url + "/videodb/webhook", ACTIVE) == [200]
    await emu.wait_bound("rts-1", "transcript")
    assert await emu.emit("rts-1", "transcript", {"text": "hello relay", "is_final": True}, "mic:default")
    got = await events.wait_for(2)
    assert [e.type for e in got] == ["session.status", "transcript.final"]
    assert got[1].session.id == "cap-1"
    assert relay.metric("relay_videodb_lease_held", collection="default") == 1
    await relay.stop()
    assert relay.metric("relay_videodb_lease_held", collection="default") == 0
    assert await redis_client.get("relay:videodb:default:lease") is None  # released on shutdown
