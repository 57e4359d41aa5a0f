"""Starting VideoDB's real-time jobs on an rtstream, bound to one socket's connection id.

Per rtstream of an active capture session (``docs/protocols/videodb.md``, sections 4 and 6): audio
gets the transcript and the audio index (with its prompt), video gets the visual index (with its
prompt) and the configured alerts on that index. Every start carries ``ws_connection_id``; VideoDB sends the job's events to that socket
only, so the client calls :meth:`JobBinder.bind` again with the new id after every reconnect.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx

from relay.core.metrics import RelayMetrics
from relay.errors import AuthRejected, UpstreamError
from relay.providers.videodb.config import AlertRule, VideoDBSettings
from relay.providers.videodb.parse import RtStreamInfo

__all__ = ["JOB_PATHS", "JobBinder", "call"]

#: The REST paths of the real-time jobs (the emulator serves the same ones). ``/index/audio`` is
#: wrong: VideoDB's audio index is ``/index/scene`` with ``extraction_type: "transcript"``
#: (``docs/protocols/videodb.md``, section 4 and "Known gaps in the relay"; issue 13).
JOB_PATHS: Final[dict[str, str]] = {
    "transcript": "/rtstream/{rtstream_id}/transcription",
    "visual_index": "/rtstream/{rtstream_id}/index/scene",
    "audio_index": "/rtstream/{rtstream_id}/index/audio",
    "event": "/rtstream/event",
    "alert": "/rtstream/{rtstream_id}/index/{index_id}/alert",
}

log = logging.getLogger("relay.videodb.jobs")


async def call(http: httpx.AsyncClient, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
    """One REST call; returns the body's ``data`` object. Raises AuthRejected or UpstreamError."""
    try:
        response = await http.request(method, path, json=json)
    except httpx.TimeoutException:
        raise UpstreamError("http_timeout") from None
    except httpx.HTTPError:
        raise UpstreamError("http_network") from None
    if response.status_code in (401, 403):
        raise AuthRejected(f"{method} {path}: HTTP {response.status_code}")
    if response.status_code >= 500:
        raise UpstreamError("http_5xx")
    if response.status_code >= 400:
        raise UpstreamError("http_4xx")
    try:
        body = response.json()
    except ValueError:
        raise UpstreamError("http_body") from None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


class JobBinder:
    """Starts the configured jobs of one collection (see the module docstring)."""

    def __init__(self, http: httpx.AsyncClient, settings: VideoDBSettings, metrics: RelayMetrics) -> None:
        self._http = http
        self._settings = settings
        self._metrics = metrics
        self._event_ids: dict[str, str] = {}  # alert label -> VideoDB event id (created once)

    async def bind(self, stream: RtStreamInfo, connection_id: str) -> bool:
        """Start every configured job of ``stream`` on ``connection_id``; True if all started.

        A failed job is counted and logged and the others still start; the caller retries the
        rtstream later. :class:`AuthRejected` propagates: the whole collection stops.
        """
        s = self._settings
        ok = True
        if stream.has_audio and s.transcript:
            ok &= await self._job("transcript", JOB_PATHS["transcript"].format(rtstream_id=stream.rtstream_id),
                                  {"action": "start", "ws_connection_id": connection_id}) is not None  # fmt: skip
        if stream.has_audio and s.audio_index:
            ok &= await self._job("audio_index", JOB_PATHS["audio_index"].format(rtstream_id=stream.rtstream_id),
                                  {"prompt": s.audio_index_prompt, "ws_connection_id": connection_id}) is not None  # fmt: skip
        if stream.has_video and s.visual_index:
            data = await self._job("visual_index", JOB_PATHS["visual_index"].format(rtstream_id=stream.rtstream_id),
                                   {"prompt": s.visual_index_prompt, "ws_connection_id": connection_id})  # fmt: skip
            ok &= data is not None
            index_id = data.get("rtstream_index_id") if data else None
            if isinstance(index_id, str):
                for rule in s.alerts:
                    ok &= await self._alert(stream, index_id, rule, connection_id)
        return ok

    async def _alert(self, stream: RtStreamInfo, index_id: str, rule: AlertRule, connection_id: str) -> bool:
        event_id = self._event_ids.get(rule.label)
        if event_id is None:
            data = await self._job("alert", JOB_PATHS["event"], {"event_prompt": rule.prompt, "label": rule.label}, count=False)
            event_id = data.get("event_id") if data else None
            if not isinstance(event_id, str):
                self._metrics.videodb_jobs_bound.labels("alert", "error").inc()
                return False
            self._event_ids[rule.label] = event_id
        path = JOB_PATHS["alert"].format(rtstream_id=stream.rtstream_id, index_id=index_id)
        return await self._job("alert", path, {"event_id": event_id, "ws_connection_id": connection_id}) is not None

    async def _job(self, job: str, path: str, body: dict[str, Any], count: bool = True) -> dict[str, Any] | None:
        try:
            data = await call(self._http, "POST", path, body)
        except AuthRejected:
            raise  # the whole collection stops (see bind)
        except UpstreamError as exc:
            self._metrics.videodb_jobs_bound.labels(job, "error").inc()
            log.warning("videodb: starting %s failed (%s): %s", job, exc.reason, path)
            return None
        if count:
            self._metrics.videodb_jobs_bound.labels(job, "ok").inc()
        return data
