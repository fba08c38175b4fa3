"""Event records: every event with its span, wall time and latency, JSON-ready."""

import json

import numpy as np

from babelcall.realtime.eventlog import event_record
from babelcall.realtime.types import (
    Span,
    SpeechSkipped,
    SpeechStarted,
    StageError,
    SynthAudio,
    Transcript,
    Translation,
    Word,
)

SPAN = Span(1.0, 2.5)


def test_each_event_kind_gives_its_fields_and_latency():
    origin, arrival = 1_000_000_000, 3_500_000_000
    events = [
        SpeechStarted(0, SPAN, 2_000_000_000),
        Transcript(0, SPAN, 3_700_000_000, (Word(" Hola", 1.0, 1.4),), (Word(" mundo", 1.5, 2),)),
        Translation(0, SPAN, 3_800_000_000, "Hello", " world", False),
        SynthAudio(0, SPAN, 4_000_000_000, np.zeros(2400, np.float32), 24000, "Hello", 1),
        SpeechSkipped(0, SPAN, 4_100_000_000, "late words", 11.234),
        StageError(0, SPAN, 4_200_000_000, "tts", "ValueError: no"),
    ]
    recs = [event_record(e, origin_ns=origin, arrival_ns=arrival, play_start_ns=5_000_000_000
                         if isinstance(e, SynthAudio) else None) for e in events]
    json.dumps(recs)  # JSON-ready
    assert [r["type"] for r in recs] == ["speech_started", "transcript", "translation",
                                         "synth_audio", "speech_skipped", "stage_error"]
    assert recs[0]["wall_ms"] == 1000.0 and recs[0]["latency_ms"] == -1500.0
    assert recs[1]["committed"] == "Hola" and recs[1]["partial"] == "mundo"
    assert recs[1]["words"] == [["Hola", 1.0, 1.4]]
    assert recs[2]["committed"] == "Hello" and recs[2]["draft"] == " world"
    assert recs[3]["duration_ms"] == 100.0 and recs[3]["seq"] == 1
    assert recs[3]["play_start_ms"] == 4000.0 and recs[3]["play_latency_ms"] == 1500.0
    assert recs[4]["behind_s"] == 11.23 and recs[4]["text"] == "late words"
    assert recs[5]["stage"] == "tts" and recs[5]["src_end"] == 2.5
