"""Conformance with ASAPP's published protocol: its example messages and its status-code table.

The example messages are those of ASAPP's "AutoTranscribe via Direct Websocket" page, as
``docs/protocols/asapp.md`` reproduces them (ellipses in ids filled in); each test names the page
it comes from. The status-code test reads the table of that note, so the note, ASAPP's list and
:func:`classify` cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.providers.asapp.parse import (
    ErrorKind,
    FinalResponse,
    OtherMessage,
    StartResponse,
    TranscriptMessage,
    classify,
    parse_message,
)

DIRECT_WEBSOCKET = "https://docs.asapp.com/autotranscribe/direct-websocket"
MEDIA_GATEWAY = "https://docs.asapp.com/apis/autotranscribe-media-gateway/start-streaming"
NOTE = Path(__file__).parents[3] / "docs" / "protocols" / "asapp.md"


def test_start_response_example() -> None:
    """Source: DIRECT_WEBSOCKET, step 3 (``startResponse``; note the spelling ``streamID``)."""
    msg = parse_message('{"message": "startResponse", "streamID": "b1c7e0f2", "status": {"code": "1000", "description": "OK"}}')
    assert msg == StartResponse(stream_id="b1c7e0f2", code="1000", description="OK") and msg.ok


def test_transcript_example() -> None:
    """Source: DIRECT_WEBSOCKET, step 5 (final transcripts; ms from the start of this stream's audio)."""
    msg = parse_message(
        '{"message": "transcript", "start": 5120, "end": 7480, "utterance": [{"text": "I\'d like to change my plan"}]}'
    )
    assert isinstance(msg, TranscriptMessage)
    assert (msg.start_ms, msg.end_ms, msg.text) == (5120, 7480, "I'd like to change my plan")


def test_final_response_example() -> None:
    """Source: DIRECT_WEBSOCKET, step 6 (``finalResponse`` after ``finishStream``; spelled ``streamId``)."""
    msg = parse_message(
        '{"message": "finalResponse", "streamId": "b1c7e0f2", "status": {"code": "1000", "description": "OK"},'
        ' "summary": {"totalAudioBytes": 960000, "audioDurationMs": 60000, "streamingSeconds": 61.2, "transcripts": 14}}'
    )
    assert msg == FinalResponse("b1c7e0f2", "1000", "OK", 960000, 60000, 61.2, 14) and msg.ok


def test_a_numeric_status_code_as_in_the_media_gateway_examples() -> None:
    """Source: MEDIA_GATEWAY shows ``status.code`` as a number where DIRECT_WEBSOCKET shows a string."""
    msg = parse_message('{"message": "finalResponse", "streamId": "b1c7e0f2", "status": {"code": 4083, "description": "idle"}}')
    assert isinstance(msg, FinalResponse) and msg.code == "4083" and not msg.ok


def test_vocabulary_response_is_not_acted_on() -> None:
    """Source: DIRECT_WEBSOCKET (``updateVocabulary`` is answered with ``vocabularyResponse``)."""
    assert parse_message('{"message": "vocabularyResponse", "status": {"code": "1000"}}') == OtherMessage("vocabularyResponse")


def _documented_codes() -> list[tuple[str, str, str]]:
    """(code, meaning, handling) rows of the note's "Status codes" table (ASAPP's list, our policy)."""
    text = NOTE.read_text()
    section = text[text.index("## 4. Status codes") : text.index("## 5.")]
    return [(m[1], m[2].strip(), m[3].strip()) for m in re.finditer(r"^\| (\d{4}) \|([^|]*)\|([^|]*)\|$", section, re.M)]


def _kind_of(handling: str) -> ErrorKind:
    """The kind a handling sentence of the table asks for."""
    for words, kind in (
        ("—", ErrorKind.OK),
        ("fresh URL", ErrorKind.TOKEN),
        ("roll over", ErrorKind.TOO_LONG),
        ("when audio resumes", ErrorKind.IDLE),
        ("report it", ErrorKind.UNTRANSCRIBABLE),
        ("permanent", ErrorKind.PERMANENT),
        ("transient", ErrorKind.TRANSIENT),
    ):
        if words in handling:
            return kind
    raise AssertionError(f"no kind for {handling!r}")


def test_the_table_lists_every_documented_code() -> None:
    codes = {code for code, _, _ in _documented_codes()}
    assert codes == {"1000", "1008", "2002", "4040", "4050", "4051", "4053", "4056", "4080", "4082", "4083", "4084",
                     "4090", "4091", "4092", "4093", "4094", "5000", "5001", "5002"}  # fmt: skip


@pytest.mark.parametrize(("code", "meaning", "handling"), _documented_codes())
def test_status_codes_are_classified_as_documented(code: str, meaning: str, handling: str) -> None:
    """Source: DIRECT_WEBSOCKET, its status-code list; the handling is this project's policy."""
    assert classify(code) is _kind_of(handling), meaning
