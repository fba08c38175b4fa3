"""The translate stage's coalescing: per phrase only the latest source is translated."""

from babelcall.realtime.stages.translate import SourceText, latest_per_phrase
from babelcall.realtime.types import Span


def src(utt, text, final=False):
    return SourceText(utt, text, Span(0, 1), final)


def test_only_the_latest_source_of_a_phrase_is_translated():
    items = [src(0, "a"), src(0, "a b"), src(0, "a b c", final=True), src(1, "d"),
             src(1, "d e")]
    assert [(s.utt, s.text, s.final) for s in latest_per_phrase(items)] == [
        (0, "a b c", True), (1, "d e", False)]


def test_a_final_source_is_never_replaced():
    items = [src(0, "a", final=True), src(1, "b"), src(1, "b c")]
    assert [s.text for s in latest_per_phrase(items)] == ["a", "b c"]
