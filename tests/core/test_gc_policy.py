"""GcFreezer: when it freezes and thaws (driven by tick() with a fake clock; no sleeping)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from relay.core.gc_policy import GcFreezer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_startup_freezes_what_exists() -> None:
    GcFreezer().freeze_startup()
    assert gc.get_freeze_count() > 1000
    assert len(gc.get_objects(2)) < 1000


def test_freezes_when_the_old_generation_outgrows_its_bound() -> None:
    freezer = GcFreezer(max_old_objects=5_000, clock=Clock())
    freezer.freeze_startup()
    assert freezer.tick() is None
    kept = [[n] for n in range(10_000)]  # long-lived state, say 250 bots' worth
    gc.collect()  # survivors move to the old generation, as they would over a few young passes
    assert len(gc.get_objects(2)) > 10_000
    assert freezer.tick() == "freeze"
    assert len(gc.get_objects(2)) == 0 and gc.get_freeze_count() > len(kept)
    assert freezer.tick() is None


def test_thaws_periodically_and_refreezes_only_after_a_full_collection() -> None:
    clock = Clock()
    freezer = GcFreezer(max_old_objects=5_000, thaw_every_s=600, clock=clock)
    freezer.freeze_startup()
    clock.now += 600
    assert freezer.tick() == "thaw"
    assert gc.get_freeze_count() == 0
    clock.now += 1
    assert freezer.tick() is None  # the collector has not been over the thawed objects yet
    gc.collect()  # CPython's next full pass
    assert freezer.tick() == "freeze"
    assert gc.get_freeze_count() > 0
