"""Meeting lifecycle and discovery: ``session.started`` and ``session.ended`` once per meeting.

A meeting (a Recall recording) may be seen by several relay processes: replicas behind a load
balancer, a bot that reconnects to another one after a drop or a rolling restart. Consumers still
need one ``session.started`` at the head of the meeting's log and one ``session.ended`` when it is
over, and an index to find meetings by. Redis decides, on the session's hash
(``<prefix>:session:{<session>}``, :class:`relay.channels.LogKeys`):

* **Start.** The first connection a process sees for a session *claims* it (``HSETNX started``, in
  a script that also records ``last_seen``). The winner publishes the ``session.started`` event
  through the :class:`~relay.core.publisher.EventPublisher` (so it lands in the meeting's log and
  live channel in publish order), records the session in the index (``ZADD <prefix>:sessions NX
  <start ms> <id>``), stores what a console needs to find it (``source``, ``bot_id``,
  ``endpoint_id``, ``metadata``, ``ref``: the :class:`~relay.schema.SessionRef` JSON) and appends
  the event to ``<prefix>:sessions:log`` (``MAXLEN ~``). The connection that asked holds its first
  events (and stops reading its socket) until the claim is answered, bounded by ``claim_timeout_s``:
  one round trip per connection and session, never per event, and the started event is accepted
  before them. If Redis does not answer in time the events go on and the claim is retried on the
  next tick (the started event then comes after them).
* **Presence.** Every process with a live connection refreshes the hash's ``last_seen`` (Redis'
  own clock, ``TIME``, so the hosts' clocks do not matter) and ``seen_by`` every ``refresh_s``, and
  the TTL of every key of the session to ``retention_s`` past now: a relay that dies leaves keys
  that expire once idle. It writes ``last_seen`` once more when its last connection to the session
  closes.
* **End.** When a process's last connection to a session closed and ``end_grace_s`` passed
  without one coming back, it tries to end the session: a script ends it (``HSETNX ended``, every
  key's TTL set to ``retention_s``) only if nobody refreshed ``last_seen`` within the grace. The
  winner publishes ``session.ended`` (reason ``disconnected``) and appends it to the sessions log.
  If someone else refreshed it, the bot moved to another replica, which ends it in its turn; this
  process checks again one grace later (a backstop for a replica that died) and forgets the
  session once it has ended or its hash is gone.
* **Loss.** If a live session's hash lost its ``started`` (Redis restarted without persistence:
  the publisher's writes re-create the hash, not the claim), the session is claimed again and the
  winner publishes ``session.started`` with ``payload.reason == "log_lost"``: readers that meet it
  after their position know what came before is gone. A live session is checked at every refresh,
  and every live session at once when Redis' ``run_id`` changed (one ``INFO`` per tick), so the
  marker follows a restart within about a tick, behind the few events published meanwhile. A session that was ended while this process
  still held a connection (its refreshes could not reach Redis for a whole grace) is reopened:
  ``session.started`` with reason ``reopened``, and it ends again later.
* **Index hygiene.** Every ``sweep_s``, a bounded batch of index members whose hash expired is
  removed (``ZREM``), a window moving through the index from sweep to sweep.
* **Shutdown** ends nothing: the bot reconnects to another replica (1012, relay/providers/recall/
  ingress.py), which holds the session from then on. A session whose bot does not come back is
  ended by a process that still remembers it (the backstop above) or, at worst, expires.

Redis failures never reach the connections: every Redis call runs in the tracker's own tasks, is
counted in ``relay_redis_errors_total{operation="session_claim"|"session_refresh"|"session_end"|
"session_sweep"}``, logged once per outage, and retried on the next tick. The decisions (what is
due, what an answer means) are :class:`LifecyclePolicy`, pure and tested on their own.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.channels import LOG_FIELD, LogKeys
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher
from relay.schema import EventTime, SessionLifecycle, SessionLifecycleEvent, SessionRef, Source

__all__ = [
    "ClaimOutcome", "Due", "EndOutcome", "LifecycleConfig", "LifecyclePolicy", "RefreshOutcome",
    "SessionTracker", "lifecycle_event",
]  # fmt: skip

log = logging.getLogger("relay.sessions")

_UTC: Final = timezone.utc
LifecycleType = Literal["session.started", "session.ended"]


def lifecycle_event(
    type_: LifecycleType,
    session: SessionRef,
    source: Source,
    *,
    received: datetime,
    started: datetime | None,
    ended: datetime | None = None,
    reason: str | None = None,
) -> SessionLifecycleEvent:
    """A ``session.started`` or ``session.ended`` event, as the tracker publishes it."""
    return SessionLifecycleEvent(
        source=source, type=type_, session=session, time=EventTime(received=received),
        payload=SessionLifecycle(reason=reason, started=started, ended=ended),
    )  # fmt: skip


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, _UTC)


# ---------------------------------------------------------------------------------------------
# The pure part: what is due, and what Redis' answers mean
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Timings and bounds of the lifecycle (``[log]`` settings give grace and retention)."""

    #: A session ends once its bot has had no connection anywhere for this long (Recall retries ~90 s).
    end_grace_s: float = 120.0
    #: Keys of an ended (or idle) session expire this long after its end (or its last refresh).
    retention_s: int = 86_400
    #: How often a live session's presence and TTLs are refreshed: well below the grace.
    refresh_s: float = 10.0
    #: How often the tracker looks at what is due.
    tick_s: float = 1.0
    #: How often a batch of index members is checked for expired sessions, and how many.
    sweep_s: float = 60.0
    sweep_batch: int = 200
    #: ``<prefix>:sessions:log`` is trimmed (``MAXLEN ~``) to about this many entries.
    sessions_log_max_entries: int = 100_000
    #: A connection waits at most this long for its session's claim before its events go on.
    claim_timeout_s: float = 1.0

    @classmethod
    def from_grace(cls, end_grace_s: float, retention_s: int, **overrides: Any) -> LifecycleConfig:
        """Timings that scale down with a short grace (tests): refresh thrice, tick ~8 times per grace."""
        values: dict[str, Any] = {
            "end_grace_s": end_grace_s, "retention_s": retention_s,
            "refresh_s": min(10.0, end_grace_s / 3), "tick_s": min(1.0, end_grace_s / 8),
        }  # fmt: skip
        values.update(overrides)
        return cls(**values)


class ClaimOutcome(enum.Enum):
    WON = "won"  # this process started (or restarted) the session: it publishes session.started
    LOST = "lost"  # someone had started it
    FAILED = "failed"  # no answer from Redis: retried


class RefreshOutcome(enum.Enum):
    OK = "ok"
    LOST = "lost"  # the hash has no ``started``: Redis lost the session
    ENDED = "ended"  # ended although this process holds a connection
    FAILED = "failed"


class EndOutcome(enum.Enum):
    ENDED = "ended"  # this process ended it: it publishes session.ended
    ALIVE = "alive"  # someone refreshed it within the grace
    ALREADY = "already"  # someone else ended it
    GONE = "gone"  # no ``started`` in the hash: expired or lost
    FAILED = "failed"


@dataclass(slots=True)
class SessionState:
    """What one process knows of one session."""

    ref: SessionRef
    source: Source
    live: int = 0  # this process's open connections to it
    claimed: bool = False  # its start is recorded in Redis (by anyone)
    claiming: bool = False  # a claim is on its way
    reason: str | None = None  # the reason of the next claim's session.started (log_lost, reopened)
    started_ms: int | None = None
    last_refresh: float | None = None  # monotonic; None: due
    end_at: float | None = None  # monotonic: when to try to end it (live == 0)


@dataclass(slots=True)
class Due:
    """What a tick should do: session ids to claim, to refresh, to try to end."""

    claims: list[str] = field(default_factory=list)
    refreshes: list[str] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.claims or self.refreshes or self.ends)


class LifecyclePolicy:
    """The lifecycle's decisions for one process, without I/O: connections open and close, Redis
    answers, and :meth:`due` says what to ask Redis next. Times are monotonic seconds."""

    def __init__(self, config: LifecycleConfig) -> None:
        self.config = config
        self.sessions: dict[str, SessionState] = {}

    def opened(self, ref: SessionRef, source: Source, now: float) -> bool:
        """A connection to ``ref`` opened; True if it must claim the session now (it is new here)."""
        state = self.sessions.get(ref.id)
        if state is None:
            state = self.sessions[ref.id] = SessionState(ref, source)
        else:
            state.ref = ref  # the newest metadata
        state.live += 1
        state.end_at = None
        if state.claimed or state.claiming:
            return False
        state.claiming = True
        return True

    def closed(self, session: str, now: float) -> bool:
        """A connection to ``session`` closed; True if it was the last here (write ``last_seen`` now)."""
        state = self.sessions.get(session)
        if state is None or state.live == 0:
            return False
        state.live -= 1
        if state.live:
            return False
        state.end_at = now + self.config.end_grace_s
        return True

    def claiming(self, session: str) -> bool:
        state = self.sessions.get(session)
        return state is not None and state.claiming

    def claim_done(self, session: str, outcome: ClaimOutcome, started_ms: int | None, now: float) -> None:
        state = self.sessions.get(session)
        if state is None:
            return
        state.claiming = False
        if outcome is ClaimOutcome.FAILED:
            return
        state.claimed = True
        state.reason = None
        if started_ms is not None:
            state.started_ms = started_ms
        # The winner's log key appears only once the publisher wrote the started event: refresh
        # its TTL on the next tick. A loser's claim refreshed presence already.
        state.last_refresh = None if outcome is ClaimOutcome.WON else now

    def refresh_done(self, session: str, outcome: RefreshOutcome, now: float) -> None:
        state = self.sessions.get(session)
        if state is None or outcome is RefreshOutcome.FAILED:
            return  # still due: retried on the next tick
        state.last_refresh = now
        if state.live == 0 or outcome is RefreshOutcome.OK:
            return  # a closed session's fate is the end check's
        # Live, but Redis forgot it or ended it: claim it again, saying why.
        state.claimed = False
        state.reason = "log_lost" if outcome is RefreshOutcome.LOST else "reopened"

    def end_done(self, session: str, outcome: EndOutcome, now: float, *, remaining_s: float = 0.0, mine: bool = True) -> None:
        """The answer to an end check. ``remaining_s``: how long until the last refresh is a grace
        old; ``mine``: this process wrote it (its own close), so it checks again then."""
        state = self.sessions.get(session)
        if state is None or outcome is EndOutcome.FAILED:
            return
        if state.live:
            return  # a connection came back meanwhile: it is live here again
        if outcome is EndOutcome.ALIVE:
            # Another process holds it and ends it in its turn; check again later in case it died.
            wait = remaining_s if mine else remaining_s + self.config.end_grace_s
            state.end_at = now + max(wait, self.config.tick_s)
            return
        del self.sessions[session]

    def redis_restarted(self) -> None:
        """Redis restarted (its ``run_id`` changed): check every live session now, not at its next
        refresh, so a loss (no persistence) is told within a tick."""
        for state in self.sessions.values():
            state.last_refresh = None

    def due(self, now: float) -> Due:
        """What to ask Redis now; claims returned are marked as on their way."""
        due = Due()
        refresh_s = self.config.refresh_s
        for sid, state in self.sessions.items():
            if state.claiming:
                continue
            if not state.claimed:
                state.claiming = True
                due.claims.append(sid)
            elif state.live:
                if state.last_refresh is None or now - state.last_refresh >= refresh_s:
                    due.refreshes.append(sid)
            elif state.end_at is not None and now >= state.end_at:
                due.ends.append(sid)
        return due


# ---------------------------------------------------------------------------------------------
# The I/O part
# ---------------------------------------------------------------------------------------------

#: The claim. KEYS: the session hash. ARGV: started ms if known (a re-claim after a loss) or "",
#: the holder id, then field/value pairs to store when won. Replies {won, started ms}: won is 1
#: when it set ``started``, 2 when it reopened an ended session, 0 when it had started already.
_CLAIM: Final = """\
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local start = ARGV[1] ~= '' and ARGV[1] or tostring(now)
local won = redis.call('HSETNX', KEYS[1], 'started', start)
if won == 0 and redis.call('HEXISTS', KEYS[1], 'ended') == 1 then
  redis.call('HDEL', KEYS[1], 'ended', 'end_reason')
  won = 2
end
redis.call('HSET', KEYS[1], 'last_seen', now, 'seen_by', ARGV[2])
if won ~= 0 and #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
return {won, redis.call('HGET', KEYS[1], 'started')}
"""

#: Presence. KEYS: hash, log, medialog. ARGV: holder id, retention ms. 1 ok, 0 no ``started``, 2 ended.
_REFRESH: Final = """\
if redis.call('HEXISTS', KEYS[1], 'started') == 0 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'last_seen', t[1] * 1000 + math.floor(t[2] / 1000), 'seen_by', ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 2 end
return 1
"""

#: The end. KEYS: hash, log, medialog. ARGV: holder id, grace ms, retention ms. Replies
#: {1, started, last_seen} ended; {0, remaining ms, seen by me} alive; {-1} gone; {-2} already.
_END: Final = """\
if redis.call('HEXISTS', KEYS[1], 'started') == 0 then return {-1} end
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return {-2} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '0')
local grace = tonumber(ARGV[2])
if now - seen < grace then
  return {0, grace - (now - seen), redis.call('HGET', KEYS[1], 'seen_by') == ARGV[1] and 1 or 0}
end
redis.call('HSET', KEYS[1], 'ended', seen, 'end_reason', 'disconnected')
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return {1, redis.call('HGET', KEYS[1], 'started'), seen}
"""

_REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)


class SessionTracker:
    """Publishes each meeting's ``session.started``/``session.ended`` once across relay processes
    and keeps the sessions index (see the module docstring).

    The ingress calls :meth:`connection_opened` when a connection learns its session (its first
    frame) and :meth:`connection_closed` when it closes; both return at once.
    """

    def __init__(
        self,
        redis: Redis,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        config: LifecycleConfig = LifecycleConfig(),
        *,
        keys: LogKeys | None = None,
    ) -> None:
        self._redis = redis
        self._publisher = publisher
        self._metrics = metrics
        self.config = config
        self.keys = keys if keys is not None else publisher.log_keys
        #: Who refreshed a session last (``seen_by``): the publisher's id for this process.
        self.holder = publisher.producer
        self.policy = LifecyclePolicy(config)
        self._claim_script = redis.register_script(_CLAIM)
        self._refresh_script = redis.register_script(_REFRESH)
        self._end_script = redis.register_script(_END)
        #: Connections waiting for a session's claim, by session.
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._to_claim: list[str] = []
        self._claimer: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failing: set[str] = set()  # operations whose failure was logged (once per outage)
        self._sweep_at = 0.0
        self._sweep_offset = 0
        self._run_id: str | None = None  # the Redis server's, to notice a restart
        self._closing = False

    # --- the ingress' side (synchronous, never waits on Redis) ---------------------------------

    def connection_opened(self, session: SessionRef, source: Source) -> asyncio.Future[None] | None:
        """A connection learnt its session. A future when it should hold its events until it
        resolves (the session's claim answered, or ``claim_timeout_s`` passed); else None."""
        if self._closing:
            return None
        if not self.policy.opened(session, source, time.monotonic()):
            return self._waiting.get(session.id)
        loop = asyncio.get_running_loop()
        waiter = self._waiting.get(session.id)
        if waiter is None:
            waiter = self._waiting[session.id] = loop.create_future()
            loop.call_later(self.config.claim_timeout_s, _resolve, waiter)
        self._enqueue_claim(session.id)
        return waiter

    def connection_closed(self, session: str) -> None:
        """A connection to ``session`` closed (on shutdown too: the grace then outlives the process)."""
        if self.policy.closed(session, time.monotonic()) and not self._closing:
            state = self.policy.sessions[session]
            if state.claimed:
                self._spawn(self._refresh([session]))  # last_seen = the close, for every process' grace

    # --- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._ticker is None:
            self._closing = False
            self._ticker = asyncio.create_task(self._run(), name="session-tracker")

    async def aclose(self) -> None:
        """Stop; end nothing (the bots reconnect to another replica, which takes the sessions on)."""
        self._closing = True
        for waiter in self._waiting.values():
            _resolve(waiter)
        self._waiting.clear()
        tasks = [t for t in (self._ticker, self._claimer, *self._tasks) if t is not None]
        self._ticker = self._claimer = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            try:
                await self.tick()
            except Exception:  # a bug here must not stop the lifecycle of every other session
                log.exception("session tracker tick failed")

    async def tick(self) -> None:
        """Do what is due: retry claims, refresh live sessions, end closed ones, sweep the index."""
        await self._check_restart()
        now = time.monotonic()
        due = self.policy.due(now)
        for sid in due.claims:
            self._enqueue_claim(sid)
        if due.refreshes:
            await self._refresh(due.refreshes)
        if due.ends:
            await self._end(due.ends)
        if now >= self._sweep_at:
            self._sweep_at = now + self.config.sweep_s
            await self._sweep()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_restart(self) -> None:
        """One ``INFO server`` per tick: a new ``run_id`` is a restarted Redis, which may have lost
        everything (no persistence) or nothing (AOF); the refreshes that follow tell which."""
        if not self.policy.sessions:
            return
        try:
            run_id = str((await self._redis.info("server")).get("run_id"))
        except _REDIS_ERRORS as exc:
            self._failed("session_refresh", exc)
            return
        if self._run_id is not None and run_id != self._run_id:
            self.policy.redis_restarted()
        self._run_id = run_id

    # --- claims --------------------------------------------------------------------------------

    def _enqueue_claim(self, session: str) -> None:
        self._to_claim.append(session)
        if self._claimer is None or self._claimer.done():
            self._claimer = asyncio.create_task(self._claim_loop(), name="session-claims")

    async def _claim_loop(self) -> None:
        """Claims go out in pipelined batches: a thousand bots connecting at once is one round trip."""
        while self._to_claim:
            batch, self._to_claim = list(dict.fromkeys(self._to_claim)), []
            await self._claim(batch)

    async def _claim(self, sessions: list[str]) -> None:
        states = [(sid, self.policy.sessions.get(sid)) for sid in sessions]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid, state in states:
                    if state is None:
                        continue
                    started = "" if state.started_ms is None else str(state.started_ms)
                    await self._claim_script(keys=[self.keys.session(sid)],
                                             args=[started, self.holder, *self._fields(state)], client=pipe)  # fmt: skip
                replies = await pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed("session_claim", exc)
            now = time.monotonic()
            for sid, _ in states:
                self.policy.claim_done(sid, ClaimOutcome.FAILED, None, now)
                if (waiter := self._waiting.pop(sid, None)) is not None:
                    _resolve(waiter)
            return
        self._recovered("session_claim")
        now = time.monotonic()
        won: list[tuple[SessionState, SessionLifecycleEvent]] = []
        answers = iter(replies)
        for sid, state in states:
            if state is None:
                continue
            code, started = next(answers)
            started_ms = int(started)
            if code:
                reason = state.reason if code == 1 else "reopened"
                event = lifecycle_event("session.started", state.ref, state.source, received=datetime.now(_UTC),
                                        started=_from_ms(started_ms), reason=reason)  # fmt: skip
                # Accepted before the connection's held events are (their callbacks run after).
                self._publisher.accept(event)
                won.append((state, event))
            self.policy.claim_done(sid, ClaimOutcome.WON if code else ClaimOutcome.LOST, started_ms, now)
            if (waiter := self._waiting.pop(sid, None)) is not None:
                _resolve(waiter)
        if won:
            await self._record_started(won)

    def _fields(self, state: SessionState) -> list[str]:
        ref = state.ref
        return ["source", state.source.value, "bot_id", ref.bot_id or "", "endpoint_id", ref.endpoint_id or "",
                "metadata", orjson.dumps(ref.metadata).decode(), "ref", ref.model_dump_json()]  # fmt: skip

    async def _record_started(self, won: list[tuple[SessionState, SessionLifecycleEvent]]) -> None:
        """The index and the sessions log; on failure the started event is still in the meeting's
        log, and the index is filled by the next claim (a loss) or not at all (counted)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for state, event in won:
                    assert state.started_ms is not None
                    pipe.zadd(self.keys.sessions, {state.ref.id: state.started_ms}, nx=True)
                    self._log_lifecycle(pipe, event)
                await pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed("session_index", exc)
        else:
            self._recovered("session_index")

    def _log_lifecycle(self, pipe: Any, event: SessionLifecycleEvent) -> None:
        pipe.xadd(self.keys.sessions_log, {LOG_FIELD: event.to_json()},
                  maxlen=self.config.sessions_log_max_entries, approximate=True)  # fmt: skip

    # --- presence ------------------------------------------------------------------------------

    def _session_keys(self, session: str) -> list[str]:
        keys = self.keys
        return [keys.session(session), keys.log(session), keys.media_log(session)]

    async def _refresh(self, sessions: list[str]) -> None:
        retention_ms = str(self.config.retention_s * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in sessions:
                    await self._refresh_script(keys=self._session_keys(sid), args=[self.holder, retention_ms], client=pipe)
                replies = await pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed("session_refresh", exc)
            return
        self._recovered("session_refresh")
        now = time.monotonic()
        outcomes = {1: RefreshOutcome.OK, 0: RefreshOutcome.LOST, 2: RefreshOutcome.ENDED}
        for sid, reply in zip(sessions, replies):
            outcome = outcomes[int(reply)]
            if outcome is not RefreshOutcome.OK:
                state = self.policy.sessions.get(sid)
                if state is not None and state.live:
                    log.warning("session %s: %s in Redis while connected here; starting it again", sid,
                                "lost" if outcome is RefreshOutcome.LOST else "ended")  # fmt: skip
            self.policy.refresh_done(sid, outcome, now)
        for sid in sessions:
            state = self.policy.sessions.get(sid)
            if state is not None and not state.claimed and not state.claiming:
                state.claiming = True
                self._enqueue_claim(sid)

    # --- the end -------------------------------------------------------------------------------

    async def _end(self, sessions: list[str]) -> None:
        args = [self.holder, str(int(self.config.end_grace_s * 1000)), str(self.config.retention_s * 1000)]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in sessions:
                    await self._end_script(keys=self._session_keys(sid), args=args, client=pipe)
                replies = await pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed("session_end", exc)
            return
        self._recovered("session_end")
        now = time.monotonic()
        ended: list[SessionLifecycleEvent] = []
        for sid, reply in zip(sessions, replies):
            code = int(reply[0])
            state = self.policy.sessions.get(sid)
            if code == 1 and state is not None:
                event = lifecycle_event("session.ended", state.ref, state.source, received=datetime.now(_UTC),
                                        started=_from_ms(int(reply[1])), ended=_from_ms(int(reply[2])),
                                        reason="disconnected")  # fmt: skip
                self._publisher.accept(event)
                ended.append(event)
                self.policy.end_done(sid, EndOutcome.ENDED, now)
            elif code == 0:
                self.policy.end_done(sid, EndOutcome.ALIVE, now, remaining_s=int(reply[1]) / 1000, mine=bool(int(reply[2])))
            else:
                self.policy.end_done(sid, EndOutcome.GONE if code == -1 else EndOutcome.ALREADY, now)
        if ended:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event in ended:
                        self._log_lifecycle(pipe, event)
                    await pipe.execute()
            except _REDIS_ERRORS as exc:
                self._failed("session_index", exc)

    # --- the index -----------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Remove up to ``sweep_batch`` index members whose session hash is gone (expired)."""
        batch = self.config.sweep_batch
        index = self.keys.sessions
        try:
            members = cast(list[bytes], await self._redis.zrange(index, self._sweep_offset, self._sweep_offset + batch - 1))
            if not members:
                self._sweep_offset = 0
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.exists(self.keys.session(member.decode()))
                exists = await pipe.execute()
            gone = [m for m, there in zip(members, exists) if not there]
            if gone:
                await self._redis.zrem(index, *gone)
        except _REDIS_ERRORS as exc:
            self._failed("session_sweep", exc)
            return
        self._recovered("session_sweep")
        kept = len(members) - len(gone)
        self._sweep_offset = 0 if len(members) < batch else self._sweep_offset + kept

    # --- failures ------------------------------------------------------------------------------

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._metrics.redis_errors.labels(operation).inc()
        if operation not in self._failing:
            self._failing.add(operation)
            log.warning("sessions: Redis %s failed (%s: %s); retrying every %.1f s",
                        operation, type(exc).__name__, exc, self.config.tick_s)  # fmt: skip

    def _recovered(self, operation: str) -> None:
        if operation in self._failing:
            self._failing.discard(operation)
            log.info("sessions: Redis %s works again", operation)

    @property
    def tracked(self) -> Iterable[str]:
        """The sessions this process remembers (live, in their grace, or moved away)."""
        return self.policy.sessions.keys()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
