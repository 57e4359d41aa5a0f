"""Starting VideoDB's real-time jobs on an rtstream, bound to one socket's connection id.

The calls and bodies are the official Python SDK's (``videodb`` on PyPI, ``rtstream.py``;
``docs/protocols/videodb.md``, section 4):

========================  ============================================================================
job                       call
========================  ============================================================================
``transcript``            ``POST /rtstream/{id}/transcription`` ``{"action": "start", "engine"?, "ws_connection_id"}``
``audio_index``           ``POST /rtstream/{id}/index/scene`` ``{"extraction_type": "transcript",
                          "extraction_config": {"segmenter", "segmentation_value"}, "prompt", "name", ...}``
``visual_index``          ``POST /rtstream/{id}/index/scene`` ``{"extraction_type": "time",
                          "extraction_config": {"time", "frame_count"}, "prompt", "name", ...}``
``alert:<label>``         ``POST /rtstream/event`` once per label, then
                          ``POST /rtstream/{id}/index/{visual index id}/alert`` ``{"event_id", "callback_url", "ws_connection_id"}``
========================  ============================================================================

**No duplicates.** Each index create makes a new, billed index, and nothing re-targets a running
one. So before creating an index the binder stops (``PATCH .../index/scene/{id}/status {"action":
"stop"}``, the SDK's ``RTStreamSceneIndex.stop``) the one it created before (its id kept in Redis,
:class:`~relay.providers.videodb.store.JobStore`, shared by replicas) and any still-running index
carrying the relay's name for that job (from ``GET .../index/scene``, in case an id was never
recorded). Alerts belong to their index and stop with it. A transcription is one per rtstream: a
start re-targets it; should VideoDB refuse a start while one runs, the binder stops it and starts
again. If stopping fails (not refused: a 5xx, a timeout), nothing is created; the job is retried.

**Failures.** :func:`call` raises :class:`Refused` for ``{"success": false}``, with HTTP 200 too
(the SDK does the same), :class:`~relay.errors.AuthRejected` for 401/403 and
:class:`~relay.errors.UpstreamError` for the rest; the client retries per job
(:mod:`~relay.providers.videodb.retry`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import httpx

from relay.core.metrics import RelayMetrics
from relay.errors import AuthRejected, UpstreamError
from relay.providers.videodb.config import VideoDBSettings
from relay.providers.videodb.parse import RtStreamInfo, parse_capture_session
from relay.providers.videodb.store import JobStore

__all__ = ["JobBinder", "Refused", "call", "fetch_capture_session", "job_label", "wanted_jobs"]

log = logging.getLogger("relay.videodb.jobs")

#: The SDK's ``SceneExtractionType`` of each index job.
EXTRACTION_TYPE: Final[dict[str, str]] = {"audio_index": "transcript", "visual_index": "time"}


class Refused(UpstreamError):
    """VideoDB answered ``{"success": false, "message": ...}`` (with HTTP 200 or any other status)."""

    def __init__(self, message: str = "") -> None:
        super().__init__("refused", message[:200])


async def call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    json: dict[str, Any] | None = None,
    params: Mapping[str, str | int | float] | None = None,
) -> dict[str, Any]:
    """One REST call; returns the body's ``data`` object. Raises Refused, AuthRejected or UpstreamError."""
    try:
        response = await http.request(method, path, json=json, params=params)
    except httpx.TimeoutException:
        raise UpstreamError("http_timeout") from None
    except httpx.HTTPError:
        raise UpstreamError("http_network") from None
    if response.status_code in (401, 403):
        raise AuthRejected(f"{method} {path}: HTTP {response.status_code}")
    if response.status_code >= 500:
        raise UpstreamError("http_5xx")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("success") is False:
        message = body.get("message")
        raise Refused(message if isinstance(message, str) else "")
    if response.status_code >= 400:
        raise UpstreamError("http_4xx")
    if not isinstance(body, dict) or body.get("success") is not True:
        raise UpstreamError("http_body")
    data = body.get("data")
    return data if isinstance(data, dict) else {}


async def fetch_capture_session(
    http: httpx.AsyncClient, collection_id: str, capture_session_id: str
) -> tuple[str | None, tuple[RtStreamInfo, ...]]:
    """``GET /collection/{c}/capture/session/{id}`` (the SDK's ``get_capture_session``): its status
    and rtstreams. Raises like :func:`call`."""
    data = await call(http, "GET", f"/collection/{collection_id}/capture/session/{capture_session_id}")
    inner = data.get("data")
    return parse_capture_session(inner if isinstance(inner, dict) else data, capture_session_id)


def wanted_jobs(stream: RtStreamInfo, settings: VideoDBSettings) -> list[str]:
    """The jobs to run on ``stream``, in the order they must start (alerts after their index)."""
    jobs = []
    if stream.has_audio and settings.transcript:
        jobs.append("transcript")
    if stream.has_audio and settings.audio_index:
        jobs.append("audio_index")
    if stream.has_video and settings.visual_index:
        jobs.append("visual_index")
        jobs += [f"alert:{rule.label}" for rule in settings.alerts]
    return jobs


def job_label(job: str) -> str:
    """The bounded metric label of a job (``alert:<label>`` -> ``alert``)."""
    return "alert" if job.startswith("alert:") else job


class JobBinder:
    """Starts the configured jobs of one collection (see the module docstring)."""

    def __init__(
        self, http: httpx.AsyncClient, settings: VideoDBSettings, metrics: RelayMetrics, store: JobStore, name_prefix: str = "relay"
    ) -> None:
        self._http = http
        self._settings = settings
        self._metrics = metrics
        self._store = store
        self._name_prefix = name_prefix
        self._rules = {rule.label: rule for rule in settings.alerts}

    def index_name(self, job: str) -> str:
        """The ``name`` the relay gives its index of ``job``: how it recognizes its own indexes."""
        return f"{self._name_prefix}:{job}"

    def body(self, job: str, connection_id: str) -> dict[str, Any]:
        """The create/start body of ``job`` as the SDK sends it (pure)."""
        s = self._settings
        if job == "transcript":
            body: dict[str, Any] = {"action": "start"}
            if s.transcript_engine:
                body["engine"] = s.transcript_engine
            body["ws_connection_id"] = connection_id
            return body
        if job == "audio_index":
            config: dict[str, Any] = {"segmenter": s.audio_index_segmenter, "segmentation_value": s.audio_index_segmentation_value}
            prompt = s.audio_index_prompt
        elif job == "visual_index":
            config = {"time": s.visual_index_window_s, "frame_count": s.visual_index_frame_count}
            prompt = s.visual_index_prompt
        else:
            raise ValueError(job)
        return {
            "extraction_type": EXTRACTION_TYPE[job],
            "extraction_config": config,
            "prompt": prompt,
            "model_name": None,
            "model_config": {},
            "name": self.index_name(job),
            "ws_connection_id": connection_id,
        }

    async def bind_job(self, stream: RtStreamInfo, job: str, connection_id: str) -> None:
        """Start ``job`` on ``stream`` for ``connection_id``, replacing what ran before.

        Raises :class:`UpstreamError` (the caller retries later), ``AuthRejected`` (the collection
        stops) or a Redis error.
        """
        rts = stream.rtstream_id
        if job == "transcript":
            await self._transcript(rts, connection_id)
        elif job in EXTRACTION_TYPE:
            await self._index(rts, job, connection_id)
        elif job.startswith("alert:"):
            await self._alert(rts, job.removeprefix("alert:"), connection_id)
        else:
            raise ValueError(job)

    async def _transcript(self, rts: str, connection_id: str) -> None:
        path = f"/rtstream/{rts}/transcription"
        body = self.body("transcript", connection_id)
        try:
            await call(self._http, "POST", path, body)
        except Refused as exc:
            log.info("videodb: transcript start on %s refused (%s); stopping and starting it again", rts, exc.detail)
            stop: dict[str, Any] = {"action": "stop"}
            if "engine" in body:
                stop["engine"] = body["engine"]
            try:
                await call(self._http, "POST", path, stop)
            except Refused:
                pass  # nothing was running after all: the start below is the answer
            await call(self._http, "POST", path, body)
        await self._store.set(rts, "transcript", connection_id)

    async def _index(self, rts: str, job: str, connection_id: str) -> None:
        base = f"/rtstream/{rts}/index/scene"
        stored = (await self._store.get(rts)).get(job)
        name, kind = self.index_name(job), EXTRACTION_TYPE[job]
        try:
            listed = (await call(self._http, "GET", base)).get("scene_indexes")
        except Refused:
            listed = None
        stopped: set[str] = set()
        running: set[str] = set()
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("rtstream_index_id"), str):
                continue
            index_id = item["rtstream_index_id"]
            if item.get("status") == "stopped":
                stopped.add(index_id)
            elif item.get("name") == name and item.get("extraction_type") == kind:
                running.add(index_id)
        if stored is not None and stored not in stopped:
            running.add(stored)
        for index_id in sorted(running):  # stop what is replaced before starting its successor
            try:
                await call(self._http, "PATCH", f"{base}/{index_id}/status", {"action": "stop"})
            except Refused:
                pass  # gone already (the session ended, or VideoDB stopped it)
            self._metrics.videodb_jobs_bound.labels(job, "stopped").inc()
            log.info("videodb: stopped %s %s on %s before replacing it", job, index_id, rts)
        data = await call(self._http, "POST", base, self.body(job, connection_id))
        new_id = data.get("rtstream_index_id")
        if not isinstance(new_id, str) or not new_id:
            raise UpstreamError("http_body", "rtstream_index_id")
        alerts = tuple(f"alert:{label}" for label in self._rules) if job == "visual_index" else ()
        await self._store.set(rts, job, new_id, drop=alerts)

    async def _alert(self, rts: str, label: str, connection_id: str) -> None:
        rule = self._rules[label]
        index_id = (await self._store.get(rts)).get("visual_index")
        if index_id is None:
            raise UpstreamError("no_index", "visual_index")
        event_id = await self._store.event_id(label)
        if event_id is None:
            data = await call(self._http, "POST", "/rtstream/event", {"event_prompt": rule.prompt, "label": rule.label})
            event_id = data.get("event_id")
            if not isinstance(event_id, str) or not event_id:
                raise UpstreamError("http_body", "event_id")
            await self._store.set_event_id(label, event_id)
        callback = self._settings.alert_callback_url
        body = {
            "event_id": event_id,
            "callback_url": callback.get_secret_value() if callback is not None else None,
            "ws_connection_id": connection_id,
        }
        try:
            data = await call(self._http, "POST", f"/rtstream/{rts}/index/{index_id}/alert", body)
        except Refused:
            await self._store.forget_event(label)  # perhaps a stale event id: create it again next time
            raise
        alert_id = data.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id:
            raise UpstreamError("http_body", "alert_id")
        await self._store.set(rts, f"alert:{label}", alert_id)
