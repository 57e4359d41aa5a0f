"""The ASAPP bridge: a Recall meeting's audio → one ASAPP stream per speaker → transcripts on Redis.

:class:`AsappBridge` is a :class:`~relay.core.observers.RecallObserver`: the Recall ingress hands it every
accepted event. For a bridged meeting (``AsappSettings.bridges``) it keeps one
:class:`~relay.providers.asapp.stream.AsappStream` per speaker (separate audio) or one per meeting
(mixed audio), all sharing the meeting's ``externalId`` (the Recall recording id), so ASAPP sees
one conversation. Each stream's ``sender.externalId`` names the person, the same in every meeting
(:meth:`~relay.providers.asapp.config.AsappSettings.external_id_of`: a configured mapping, else
derived from the e-mail, else the Recall participant id scoped by the meeting). A speaker's stream is finished when they leave (a new one starts if they come
back), all of a meeting's streams when the bot disconnects, and every stream at shutdown.

Its :attr:`~AsappBridge.interest` asks the ingress for audio chunks and leaves of bridged meetings
only, so other meetings' events and other types cost it nothing (no model is built for them).
``on_event`` runs inside the Recall connection's ``data_received``: it only decodes and resamples
the chunk and hands it to the stream (no awaits, never raises); sockets, retries and publishing
run on each stream's own task, so one stuck or failing stream never holds up the meeting or
another speaker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass, field

import httpx

from relay.core.metrics import RelayMetrics
from relay.core.observers import Interest
from relay.providers.asapp.config import AsappSettings
from relay.providers.asapp.stream import AsappStream, SpeakerStream
from relay.core.publisher import EventPublisher
from relay.schema import AudioChunkEvent, EventBase, Participant, ParticipantEvent, SessionRef, Source

log = logging.getLogger("relay.asapp")

MIXED_SPEAKER = "mixed"


@dataclass(eq=False)
class _Meeting:
    session: SessionRef
    streams: dict[str, AsappStream] = field(default_factory=dict)


class AsappBridge:
    """Streams bridged Recall meetings to ASAPP AutoTranscribe; see the module docstring."""

    name = "asapp"

    def __init__(self, settings: AsappSettings, publisher: EventPublisher, metrics: RelayMetrics) -> None:
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics
        self._meetings: dict[str, _Meeting] = {}
        #: Streams finishing after a leave or a disconnect, kept so shutdown can wait for them.
        self._finishing: set[AsappStream] = set()
        self._client: httpx.AsyncClient | None = None
        self._closing = False

    async def start(self) -> None:
        # trust_env=False: the relay's outbound calls never go through environment proxies.
        self._client = httpx.AsyncClient(timeout=self._settings.http_timeout_s, trust_env=False)

    async def aclose(self, timeout: float | None = None) -> None:
        """Finish every stream (``finishStream``, wait for ``finalResponse``) within ``timeout`` seconds."""
        self._closing = True
        streams = [s for m in self._meetings.values() for s in m.streams.values()] + list(self._finishing)
        self._meetings.clear()
        limit = timeout if timeout is not None else self._settings.final_timeout_s
        await asyncio.gather(*(s.aclose(limit) for s in streams), return_exceptions=True)
        self._finishing.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- RecallObserver ----------------------------------------------------------------------

    @property
    def interest(self) -> Interest:
        """Audio chunks and leaves, of the meetings the bridging rule selects."""
        return Interest(frozenset({"audio.chunk", "participant.leave"}), self._bridged)

    def _bridged(self, session: SessionRef) -> bool:
        return self._settings.bridges(session.metadata)

    def on_event(self, event: EventBase) -> None:
        try:
            self._on_event(event)
        except Exception:  # an observer must never break the Recall socket
            log.exception("asapp bridge: event %s not handled", event.type)
            self._metrics.bridge_errors.labels(self.name).inc()

    def on_disconnect(self, session: SessionRef) -> None:
        meeting = self._meetings.pop(session.id, None)
        if meeting is not None:
            for stream in meeting.streams.values():
                self._finish(stream)

    # --- internals ---------------------------------------------------------------------------

    @property
    def meetings(self) -> int:
        return len(self._meetings)

    def streams(self, session_id: str) -> dict[str, AsappStream]:
        """The current streams of a meeting by speaker id (for tests and the bench)."""
        meeting = self._meetings.get(session_id)
        return dict(meeting.streams) if meeting is not None else {}

    def _on_event(self, event: EventBase) -> None:
        if self._closing or self._client is None or event.source is not Source.RECALL:
            return
        if isinstance(event, AudioChunkEvent):
            self._on_audio(event)
        elif isinstance(event, ParticipantEvent) and event.type == "participant.leave":
            meeting = self._meetings.get(event.session.id)
            if meeting is not None and event.participant is not None and self._settings.audio == "separate":
                stream = meeting.streams.pop(_speaker_key(event.participant), None)
                if stream is not None:
                    self._finish(stream)

    def _on_audio(self, event: AudioChunkEvent) -> None:
        s = self._settings
        if event.payload.mix != s.audio or not event.payload.audio:
            return
        meeting = self._meetings.get(event.session.id)
        if meeting is None:
            if not s.bridges(event.session.metadata):
                return
            meeting = self._meetings[event.session.id] = _Meeting(event.session)
        if s.audio == "mixed":
            speaker_key, participant, role = MIXED_SPEAKER, Participant(), s.mixed_role
        else:
            participant = event.participant or Participant()
            speaker_key = _speaker_key(participant)
            role = s.role_of(name=participant.name, email=participant.email, is_host=participant.is_host)
        stream = meeting.streams.get(speaker_key)
        if stream is None:
            stream = self._open(meeting, speaker_key, participant, role)
        try:
            pcm = base64.b64decode(event.payload.audio, validate=True)
        except (binascii.Error, ValueError):
            # The Recall parser checked this base64 (invalid_base64): failing here is the relay's bug.
            self._metrics.bridge_errors.labels(self.name).inc()
            log.error("asapp bridge: audio of %s that the parser accepted does not decode", event.session.id)
            return
        stream.feed(pcm, event.time.relative)

    def _open(self, meeting: _Meeting, speaker_key: str, participant: Participant, role: str) -> AsappStream:
        assert self._client is not None
        if speaker_key == MIXED_SPEAKER:
            external_id = f"recall-{meeting.session.id}-{MIXED_SPEAKER}"
        else:
            external_id = self._settings.external_id_of(
                session_id=meeting.session.id, participant_id=participant.id, name=participant.name, email=participant.email
            )
        speaker = SpeakerStream(
            conversation_id=meeting.session.id,
            speaker_id=speaker_key,
            external_id=external_id,
            role=role,  # type: ignore[arg-type]
            session=meeting.session,
            participant=participant,
        )
        stream = AsappStream(
            speaker, settings=self._settings, client=self._client, publisher=self._publisher, metrics=self._metrics
        )
        stream.start()
        meeting.streams[speaker_key] = stream
        log.info("asapp: streaming meeting %s speaker %s as %s", meeting.session.id, speaker_key, role)
        return stream

    def _finish(self, stream: AsappStream) -> None:
        stream.finish()
        self._finishing.add(stream)
        stream.add_done_callback(lambda: self._finishing.discard(stream))


def _speaker_key(participant: Participant) -> str:
    """Which stream of the meeting a participant's audio goes to: Recall's participant id, else the name.

    Only the bridge's key within one meeting; ASAPP's ``sender.externalId`` is ``SpeakerStream.external_id``.
    """
    return participant.id or participant.name or "unknown"
