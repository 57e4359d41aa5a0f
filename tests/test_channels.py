"""Channel names and log keys: what the relay writes and the client reads come from one place."""

from __future__ import annotations

from relay.channels import LogKeys


def test_a_sessions_keys_share_one_hash_tag() -> None:
    keys = LogKeys("relay")
    names = [keys.log("rec-1"), keys.media_log("rec-1"), keys.session("rec-1")]
    assert names == ["relay:log:{rec-1}", "relay:medialog:{rec-1}", "relay:session:{rec-1}"]
    assert {name[name.index("{"): name.index("}") + 1] for name in names} == {"{rec-1}"}


def test_braces_and_glob_characters_cannot_break_the_hash_tag() -> None:
    keys = LogKeys("p")
    assert keys.log("a{b}:c*") == "p:log:{a_b__c_}"
    assert keys.log("") == "p:log:{_}"
    assert (keys.sessions, keys.sessions_log) == ("p:sessions", "p:sessions:log")
