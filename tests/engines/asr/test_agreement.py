"""LocalAgreement-2 policy with a scripted Asr (pure), and on the real Whisper model."""

import jiwer
import numpy as np
import pytest
from conftest import load_clip, normalize

from babelcall.engines.asr.agreement import HypothesisBuffer, OnlineAsr, tidy
from babelcall.realtime.types import Word, join_words


def words(*spec):
    return [Word(f" {t}", s, s + 0.3) for t, s in spec]


def test_commits_longest_common_prefix_of_two_hypotheses():
    hb = HypothesisBuffer()
    hb.insert(words(("hello", 0.0), ("word", 0.4)), 0.0)
    assert hb.flush() == []
    hb.insert(words(("hello", 0.0), ("world", 0.4), ("again", 0.8)), 0.0)
    assert [w.text for w in hb.flush()] == [" hello"]
    assert [w.text for w in hb.tail] == [" world", " again"]


def test_committed_words_are_not_emitted_again():
    hb = HypothesisBuffer()
    for _ in range(2):
        hb.insert(words(("one", 0.0), ("two", 0.4)), 0.0)
        hb.flush()
    hb.insert(words(("one", 0.0), ("two", 0.4), ("three", 0.8)), 0.0)
    assert hb.flush() == []
    hb.insert(words(("one", 0.0), ("two", 0.4), ("three", 0.8)), 0.0)
    assert [w.text for w in hb.flush()] == [" three"]


def test_seam_ngram_repeat_is_dropped():
    hb = HypothesisBuffer()
    hb.insert(words(("a", 0.0), ("b", 0.4)), 0.0)
    hb.flush()
    hb.insert(words(("a", 0.0), ("b", 0.4)), 0.0)
    hb.flush()  # commits a b, last end 0.7
    # Whisper re-hears "b" with a shifted time after the seam.
    hb.insert(words(("b", 0.65), ("c", 1.0)), 0.0)
    hb.flush()
    hb.insert(words(("b", 0.65), ("c", 1.0)), 0.0)
    assert [w.text for w in hb.flush()] == [" c"]


class ScriptedAsr:
    sample_rate = 16000

    def __init__(self, script):
        self.script = list(script)
        self.prompts = []

    def transcribe(self, audio, *, language, prompt="", task="transcribe"):
        self.prompts.append(prompt)
        return self.script.pop(0)


def test_online_asr_trims_at_sentence_end_and_prompts_with_text_before_buffer():
    asr = ScriptedAsr([
        words(("Hi.", 0.0), ("How", 0.5)),
        words(("Hi.", 0.0), ("How", 0.5), ("are", 0.9)),
        words(("How", 0.2), ("are", 0.6), ("you", 1.0)),  # times after the trim at 10.3 s
    ])
    online = OnlineAsr(asr, language="en")
    online.start(10.0, np.zeros(16000, dtype=np.float32))
    assert online.process() == []
    committed = online.process()
    assert [w.text for w in committed] == [" Hi.", " How"]
    # The buffer was cut after "Hi." (its end, 10.3 s): the next prompt holds it.
    assert online._offset > 10.2
    rest = online.process()
    assert asr.prompts[-1].strip() == "Hi."
    rest += online.finish()
    assert join_words(rest) == "are you"


def test_a_pass_at_a_pause_settles_the_whole_hypothesis_and_speech_can_resume():
    asr = ScriptedAsr([
        words(("However,", 0.0)),                      # the only pass before the pause
        words(("However,", 0.0), ("due", 0.8)),        # speech resumed after the pause
        words(("However,", 0.0), ("due", 0.8), ("to", 1.1)),
    ])
    online = OnlineAsr(asr, language="en")
    online.start(5.0, np.zeros(16000, dtype=np.float32))
    settled = online.process(settle=True)
    assert [w.text for w in settled] == [" However,"]  # no second pass needed
    assert online.process() == []                   # "However," is not emitted again
    assert [w.text for w in online.process()] == [" due"]
    assert join_words(online.finish()) == "to"


def test_online_asr_on_real_clip(asr):
    audio = load_clip("fleurs-en-002")
    online = OnlineAsr(asr, language="en")
    online.start(0.0)
    committed, emitted_before_end = [], 0
    for i in range(0, len(audio), 16000):
        online.insert_audio(audio[i:i + 16000])
        committed += online.process()
    emitted_before_end = len(committed)
    committed += online.finish()
    ref = open(load_clip.__globals__["clip_path"]("fleurs-en-002").with_suffix(".txt")).read()
    assert emitted_before_end > len(committed) // 2  # most words commit while speaking
    starts = [w.start for w in committed]
    assert starts == sorted(starts)  # committed words never go back in time
    assert jiwer.wer(normalize(ref), normalize(join_words(committed))) < 0.35


def test_a_word_with_enough_audio_after_it_is_committed_without_agreement():
    """``stable_after_s``: a word the recogniser heard this long before the end of its
    buffer is committed on one pass; newer words still wait for a second pass to agree."""
    asr = ScriptedAsr([
        words(("Many", 0.0), ("people", 0.4), ("think", 1.5)),   # buffer of 2.0 s
        words(("Many", 0.0), ("persons", 0.4), ("think", 1.5)),  # 2.0 s, re-read
    ])
    online = OnlineAsr(asr, language="en", stable_after_s=1.2)
    online.start(0.0, np.zeros(32000, dtype=np.float32))
    # "Many" (ends 0.3) and "people" (ends 0.7) lie 1.2 s before the end (2.0): committed
    assert [w.text for w in online.process()] == [" Many", " people"]
    assert [w.text for w in online.process()] == [" think"]  # agreed on by both passes


@pytest.mark.parametrize(("probs", "min_prob", "committed", "opens"), [
    ((0.9, 0.8, 0.9), None, ["Many", "people"], 0.0),   # no gate: both words before the mark
    ((0.9, 0.8, 0.9), 0.3, ["Many", "people"], 0.0),    # sure of both
    ((0.9, 0.2, 0.9), 0.3, ["Many"], 0.0),              # stops at the first unsure word
    # the pass's opening word is unsure as Whisper's first word always is, the next is sure
    ((0.19, 0.9, 0.9), 0.3, ["Many", "people"], 0.0),
    ((0.19, 0.4, 0.9), 0.3, [], 0.0),                   # ... the next is unsure too
    ((0.19, 0.9, 0.9), 0.3, [], 0.4),                   # unsure mid-pass: holds all back
    ((None, 0.9, 0.9), 0.3, [], 0.4),                   # no probability: not sure
])
def test_early_commits_stop_at_the_first_word_whisper_was_unsure_of(probs, min_prob,
                                                                     committed, opens):
    """``stable_min_prob``: the one-pass commit takes words up to the first the decoder gave
    a lower probability than this ("All" at 0.19 became "All nails" -> "All nouns" as more
    audio came); the rest wait for agreement as before. The word that opens a pass is let
    through when the word after it is sure ("people" p 0.06, "don't" p 0.85): Whisper's
    first word is unsure whatever it is. ``opens``: when the first word starts in the pass."""
    spec = (("Many", opens), ("people", opens + 0.35), ("think", 1.5))
    hyp = [Word(f" {t}", s, s + 0.3, p) for (t, s), p in zip(spec, probs, strict=True)]
    online = OnlineAsr(ScriptedAsr([hyp]), language="en", stable_after_s=1.0,
                       stable_min_prob=min_prob)
    online.start(0.0, np.zeros(32000, dtype=np.float32))
    assert [w.text.strip() for w in online.process()] == committed


def test_without_stable_after_one_pass_commits_nothing():
    asr = ScriptedAsr([words(("Many", 0.0), ("people", 0.4), ("think", 1.5))])
    online = OnlineAsr(asr, language="en")
    online.start(0.0, np.zeros(32000, dtype=np.float32))
    assert online.process() == []


def timed(*spec):
    """Words as (text, start, end, prob)."""
    return [Word(f" {t}", s, e, p) for t, s, e, p in spec]


@pytest.mark.parametrize(("said", "heard"), [
    ("However, however due", "However, due"),                     # Whisper's one-word loop
    ("due to the slow curve, due to the slow curve, styles",      # a five-word loop
     "due to the slow curve, styles"),
    ("I I think so", "I think so"),                               # a stutter
    ("I know that that is true", "I know that that is true"),    # grammar, kept
    ("she had had enough", "she had had enough"),
    ("go on and on", "go on and on"),                             # not adjacent: kept
    ("no no no", "no"),
])
def test_a_repeated_run_is_heard_once(said, heard):
    """``tidy``: a run of up to five words that repeats the run just before it is Whisper
    looping (or a stutter): translated and voiced, it is only delay for the listener."""
    ws = [Word(f" {t}", i * 0.3, i * 0.3 + 0.3, 0.9) for i, t in enumerate(said.split())]
    assert join_words(tidy(ws)) == heard


@pytest.mark.parametrize(("first", "seam", "kept"), [
    (("Have", 7.74, 7.80, 0.01), 7.74, False),     # a sliver the decoder barely believed
    (("Now,", 7.74, 7.74, 0.05), 7.74, False),
    (("Have", 7.74, 7.80, 0.01), None, True),      # the phrase's own start: no seam
    (("To", 19.35, 20.11, 0.01), 19.35, True),     # unsure but long: a real word
    (("Have", 7.74, 7.80, 0.60), 7.74, True),      # short but believed
    (("Have", 7.90, 7.96, 0.01), 7.74, True),      # not at the cut
])
def test_a_fragment_at_the_cut_is_dropped(first, seam, kept):
    """The buffer is cut after a committed sentence end; Whisper then often starts with a
    word made of the sliver before the cut ("Have"/"Now,"/"Enough" before "always begin" on
    the en->es talk), a different one each pass, so no two passes agreed on a first word and
    nothing after it committed."""
    ws = timed(first, ("always", 7.82, 8.30, 0.8), ("begin", 8.30, 8.78, 0.95))
    assert [w.text.strip() for w in tidy(ws, seam=seam)][0] == (first[0] if kept else "always")


def test_words_after_a_flickering_fragment_commit_on_agreement():
    """Two passes after a cut that start with different fragments agree on what follows."""
    asr = ScriptedAsr([
        words(("One.", 0.0)),
        words(("One.", 0.0)),  # commits "One." and cuts the buffer at 0.3
        timed(("Have", 0.0, 0.06, 0.01), ("always", 0.1, 0.5, 0.9), ("begin", 0.5, 0.9, 0.9)),
        timed(("Now,", 0.0, 0.0, 0.05), ("always", 0.1, 0.5, 0.9), ("begin", 0.5, 0.9, 0.9),
              ("with", 0.9, 1.1, 0.9)),
    ])
    online = OnlineAsr(asr, language="en")
    online.start(0.0, np.zeros(16000, dtype=np.float32))
    online.process()
    assert [w.text.strip() for w in online.process()] == ["One."]
    online.insert_audio(np.zeros(16000, dtype=np.float32))
    assert online.process() == []
    assert [w.text.strip() for w in online.process()] == ["always", "begin"]


@pytest.mark.parametrize(("now_end", "kept"), [
    (13.08, ["middle", "of", "a", "sentence."]),  # the pass looped and stopped 3 s short
    (15.6, []),                                   # it ends within a second: it heard them
    (16.4, []),                                   # it heard as far
])
def test_a_pass_that_stops_short_keeps_the_words_of_the_pass_before(now_end, kept):
    """On the en->es talk the phrase's last pass over a buffer that began mid-sentence looped
    ("The word of the word of the") and ended at 13.08 s; the pass before had heard "middle of
    a sentence." up to 16.4 s, and the phrase ended with those words never committed."""
    from babelcall.engines.asr.agreement import dropped_out

    before = timed(("middle", 15.76, 15.9, 0.9), ("of", 15.9, 16.0, 0.9),
                   ("a", 16.0, 16.05, 0.9), ("sentence.", 16.05, 16.4, 0.9))
    assert [w.text.strip() for w in dropped_out(before, now_end)] == kept


def test_the_phrase_s_last_words_survive_a_final_pass_that_stops_short():
    asr = ScriptedAsr([
        words(("even", 0.0), ("the", 0.4), ("middle", 0.8), ("of", 1.2), ("a", 1.6),
              ("sentence.", 2.0)),
        words(("even", 0.0), ("the", 0.4)),  # loops and stops
    ])
    online = OnlineAsr(asr, language="en")
    online.start(0.0, np.zeros(48000, dtype=np.float32))
    assert online.process() == []
    committed = online.process() + online.finish()
    assert join_words(committed) == "even the middle of a sentence."
