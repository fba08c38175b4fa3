"""faster-whisper engine on real FLEURS clips (Whisper base, CPU)."""

import jiwer
import numpy as np
import pytest
from conftest import clip_path, load_clip, normalize

from babelcall.engines.asr.whisper import FasterWhisperAsr, WhisperOptions
from babelcall.realtime.errors import ModelNotFound, UnsupportedLanguage
from babelcall.realtime.types import join_words


def ref_text(clip):
    return clip_path(clip).with_suffix(".txt").read_text()


@pytest.mark.parametrize("lang,max_wer", [("en", 0.3), ("es", 0.2)])
def test_transcribes_clips(asr, lang, max_wer):
    refs, hyps = [], []
    for i in range(3):
        clip = f"fleurs-{lang}-00{i}"
        audio = load_clip(clip)[: 16000 * 28]
        words = asr.transcribe(audio, language=lang)
        assert all(0 <= w.start <= w.end <= len(audio) / 16000 + 0.01 for w in words)
        refs.append(normalize(ref_text(clip)))
        hyps.append(normalize(join_words(words)))
    assert jiwer.wer(refs, hyps) < max_wer


def test_short_window_matches_full_window(asr):
    audio = load_clip("fleurs-es-001")[: 16000 * 6]
    short = normalize(join_words(asr.transcribe(audio, language="es")))
    asr.options, saved = WhisperOptions(short_window=False), asr.options
    try:
        full = normalize(join_words(asr.transcribe(audio, language="es")))
    finally:
        asr.options = saved
    assert jiwer.wer(full, short) < 0.25


def test_translate_task_gives_english(asr):
    words = asr.transcribe(load_clip("fleurs-es-000")[: 16000 * 20], language="es",
                           task="translate")
    text = normalize(join_words(words))
    assert len(text.split()) > 5
    assert sum(w in {"the", "and", "of", "to", "a", "in", "is"} for w in text.split()) >= 2


def test_silence_and_tiny_input_give_no_words(asr):
    assert asr.transcribe(np.zeros(16000 * 3, dtype=np.float32), language="en") == []
    assert asr.transcribe(np.zeros(100, dtype=np.float32), language="en") == []


def test_unknown_language(asr):
    with pytest.raises(UnsupportedLanguage):
        asr.transcribe(np.zeros(16000, dtype=np.float32), language="xx")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="whisper-large-v9"):
        FasterWhisperAsr("whisper-large-v9", models_dir=str(tmp_path))
    with pytest.raises(ModelNotFound, match="does not exist"):
        FasterWhisperAsr(str(tmp_path / "nope"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.bin").write_bytes(b"junk")
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="broken"):
        FasterWhisperAsr(str(tmp_path / "broken"))


def test_batch_equals_one_by_one(asr):
    clips = [load_clip(f"fleurs-en-00{i}")[: 16000 * 4] for i in range(3)]
    clips.append(np.zeros(800, dtype=np.float32))  # too short: no words, no crash
    batch = asr.transcribe_batch(clips, language="en", prompts=["", "Hello.", "", ""])
    assert batch[3] == []
    assert [w.text for w in batch[0]] == [w.text for w in asr.transcribe(clips[0], language="en")]
    assert all(batch[i] for i in range(3))
