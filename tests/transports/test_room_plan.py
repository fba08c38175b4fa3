"""The room's plan as a table: who is present -> which sessions run, who hears whom through
which session, whose own voice reaches whom, and who reads whose words."""

import pytest

from babelcall.transports.room_plan import Member, Voice, plan

A, B, C, D = Member("A", "en"), Member("B", "es"), Member("C", "fr"), Member("D", "en")

CASES = [
    # (present, sessions, translations (listener, speaker, lang), voices, own words)
    ([A], set(), set(), set(), set()),
    ([A, D], set(), set(),
     {Voice("A", "D", 1.0, 0.5), Voice("D", "A", 1.0, 0.5)}, {("D", "A"), ("A", "D")}),
    ([A, B], {("A", "es"), ("B", "en")}, {("B", "A", "es"), ("A", "B", "en")}, set(), set()),
    ([A, B, C],
     {("A", "es"), ("A", "fr"), ("B", "en"), ("B", "fr"), ("C", "en"), ("C", "es")},
     {("B", "A", "es"), ("C", "A", "fr"), ("A", "B", "en"), ("C", "B", "fr"),
      ("A", "C", "en"), ("B", "C", "es")}, set(), set()),
    # a second English speaker: no new session for anyone; D hears B through B's en session
    ([A, B, D], {("A", "es"), ("B", "en"), ("D", "es")},
     {("B", "A", "es"), ("A", "B", "en"), ("D", "B", "en"), ("B", "D", "es")},
     {Voice("A", "D", 1.0, 0.5), Voice("D", "A", 1.0, 0.5)}, {("D", "A"), ("A", "D")}),
    # B asked for the original voices under the translation, at 0.3
    ([A, Member("B", "es", mix=0.3)], {("A", "es"), ("B", "en")},
     {("B", "A", "es"), ("A", "B", "en")}, {Voice("A", "B", 0.6, 0.3)}, set()),
]


@pytest.mark.parametrize("present, sessions, translations, voices, own", CASES,
                         ids=["alone", "one-language", "two", "three", "shared-en", "mix"])
def test_room_plan(present, sessions, translations, voices, own):
    p = plan(present)
    assert p.sessions == sessions
    assert p.translations == translations
    assert p.voices == voices
    assert p.own_words == own


def test_every_translation_runs_on_a_planned_session_and_joining_only_adds():
    everyone = [A, B, C, D, Member("E", "pt", mix=0.5)]
    for n in range(1, len(everyone) + 1):
        before, after = plan(everyone[:n - 1]), plan(everyone[:n])
        assert {(s, lang) for _, s, lang in after.translations} <= after.sessions
        assert before.sessions <= after.sessions and before.translations <= after.translations
        assert before.voices <= after.voices
        new = everyone[n - 1].id  # what a join adds involves the newcomer
        assert all(new in (ln, s) for ln, s, _ in after.translations - before.translations)
