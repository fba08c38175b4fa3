"""The whole pipeline on real models (Whisper base, Apertium, Kokoro) and real FLEURS speech."""

import asyncio

import numpy as np
import sacrebleu
from conftest import clip_path, hear_back, reference

from babelcall.realtime.audio import Resampler, frame_from_array
from babelcall.realtime.replay import replay
from babelcall.realtime.session import SessionConfig
from babelcall.realtime.types import SpeechEnded, SynthAudio, Transcript, Translation


def to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    r = Resampler(16000)
    return np.concatenate([r.push(frame_from_array(pcm, rate)), r.flush()])


def test_english_clip_becomes_spanish_speech_about_the_same_thing(engines):
    result = asyncio.run(replay(engines, SessionConfig("en", "es"),
                                clip_path("fleurs-en-000"), fast=True))
    events = result.events
    ref = reference("fleurs-en-000", "en", "es")
    source = " ".join(w.text for e in events if isinstance(e, Transcript) for w in e.committed)
    assert sacrebleu.sentence_chrf(source, [ref["src_ref"]]).score > 60
    target = "".join(e.committed for e in events if isinstance(e, Translation))
    assert sacrebleu.sentence_chrf(target, [ref["tgt_ref"]]).score > 35
    # The audio on the output timeline, heard back by Whisper, is Spanish on the same topic.
    heard = hear_back(to_16k(result.audio, result.rate), "es")
    assert sacrebleu.sentence_chrf(heard, [ref["tgt_ref"]]).score > 35
    # Streaming, not dubbing: translated audio starts before the source clip ends.
    first_audio = next(e for e in events if isinstance(e, SynthAudio))
    last_end = max(e.src.end for e in events if isinstance(e, SpeechEnded))
    assert first_audio.wall_ns / 1e9 < last_end
    assert len(result.audio) / result.rate >= result.input_s


def test_spanish_to_english_through_whisper_translation(engines):
    from babelcall.engines.registry import Engines

    whisper_mt = Engines(vad=engines.vad, asr=engines.asr, tts=engines.tts, translator=None)
    result = asyncio.run(replay(whisper_mt, SessionConfig("es", "en"),
                                clip_path("fleurs-es-000"), fast=True))
    ref = reference("fleurs-es-000", "es", "en")
    target = "".join(e.committed + " " for e in result.events if isinstance(e, Translation))
    assert sacrebleu.sentence_chrf(target, [ref["tgt_ref"]]).score > 35
    heard = hear_back(to_16k(result.audio, result.rate), "en")
    assert sacrebleu.sentence_chrf(heard, [ref["tgt_ref"]]).score > 30
