"""GcFreezer: keeps the cyclic garbage collector's full passes short on a relay holding many bots.

A full collection scans every tracked object of the old generation with the event loop stopped:
about 40 objects per connected bot plus what its first frames cache, so 40-170 ms with a few
thousand bots (gc callbacks in a relay under ``python -m bench capacity``). CPython runs one
whenever the objects that survived the young generations since the last one exceed a quarter of
the old generation: soon after a burst of new connections, which is when their bots start
streaming, and every p99 pays for it.

:func:`gc.freeze` moves every object alive into a permanent generation the collector skips.
Refcounting still frees those objects; only garbage *cycles* among them wait. Recall connections
leave none (``tests/providers/recall/test_ingress.py``), so freezing their state costs nothing;
other objects might (a provider client's reconnects), so frozen objects are handed back to the
collector every ``thaw_every_s`` and refrozen only after it has made a full pass over them.

The policy, checked every ``check_every_s`` by :meth:`GcFreezer.run`:

* at startup: collect, then freeze (modules, schemas, the app);
* when the old generation holds more than ``max_old_objects``: freeze, so a full pass never scans
  more than about that many (a few ms per 10,000), and no collection first: that would be the very
  pause avoided;
* every ``thaw_every_s``: unfreeze; the next freeze waits for CPython's next full collection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("relay.gc")


class GcFreezer:
    """Freezes long-lived objects out of the cyclic GC's reach; see the module docstring."""

    def __init__(
        self,
        *,
        max_old_objects: int = 20_000,
        thaw_every_s: float = 600.0,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_old_objects = max_old_objects
        self._thaw_every_s = thaw_every_s
        self._check_every_s = check_every_s
        self._clock = clock
        self._thawed_at = clock()
        self._full_passes_at_thaw: int | None = None  # set while waiting for a full collection

    def freeze_startup(self) -> None:
        """Collect what startup left behind, then freeze everything alive."""
        gc.collect()
        gc.freeze()
        self._thawed_at = self._clock()

    def tick(self) -> str | None:
        """One check of the policy; returns what it did ("freeze", "thaw") or None."""
        now = self._clock()
        if now - self._thawed_at >= self._thaw_every_s:
            gc.unfreeze()
            self._thawed_at = now
            self._full_passes_at_thaw = _full_passes()
            return "thaw"
        if self._full_passes_at_thaw is not None:
            if _full_passes() == self._full_passes_at_thaw:
                return None  # the collector has not been over the thawed objects yet
            self._full_passes_at_thaw = None
        # A C loop over the old generation: ~0.3 ms per 20,000 objects, which is all it holds here.
        if len(gc.get_objects(2)) > self._max_old_objects:
            gc.freeze()
            return "freeze"
        return None

    async def run(self) -> None:
        """Check the policy every ``check_every_s`` until cancelled."""
        while True:
            await asyncio.sleep(self._check_every_s)
            done = self.tick()
            if done is not None:
                log.debug("gc %s: %d objects frozen", done, gc.get_freeze_count())


def _full_passes() -> int:
    return int(gc.get_stats()[2]["collections"])
