"""A room as a plan: who hears whom, in which language, through what — a pure function of
who is present, so the rules are tested as a table (tests/transports/test_room_plan.py) and
``rooms.py`` only wires what changes between two plans.

The rules:
- A speaker gets one session per *other* language present (A:en with B:es and C:fr ->
  A en->es and A en->fr); nobody else speaking their language needs none.
- A listener hears each speaker of another language through that speaker's session into the
  listener's language, and sees its captions; the speaker sees their own session's captions.
- People who share a language hear each other's original voice (ducked under translations)
  and see each other's words as captions (from any session of the speaker).
- A listener who asked for ``mix`` > 0 also hears the original voice of speakers of other
  languages under their translation (at ``2 * mix``, ducked to ``mix``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Member:
    id: str
    lang: str
    mix: float = 0.0  # the others' own voices under their translation (0: not at all)


class Voice(NamedTuple):
    """``listener`` hears ``speaker``'s own voice at ``gain``, ducked to ``duck_gain``
    while a translation plays."""

    speaker: str
    listener: str
    gain: float
    duck_gain: float


@dataclass(frozen=True)
class Plan:
    sessions: frozenset[tuple[str, str]]           # (speaker, target language)
    translations: frozenset[tuple[str, str, str]]  # (listener, speaker, target language)
    voices: frozenset[Voice]
    own_words: frozenset[tuple[str, str]]          # (listener, speaker) of one language


def plan(members: list[Member] | tuple[Member, ...]) -> Plan:
    langs = {m.lang for m in members}
    sessions = frozenset((s.id, lang) for s in members for lang in langs if lang != s.lang)
    translations = frozenset((ln.id, s.id, ln.lang) for s in members for ln in members
                             if s.lang != ln.lang)
    voices = set()
    own = set()
    for s in members:
        for ln in members:
            if s is ln:
                continue
            if s.lang == ln.lang:
                voices.add(Voice(s.id, ln.id, 1.0, 0.5))
                own.add((ln.id, s.id))
            elif ln.mix > 0:
                voices.add(Voice(s.id, ln.id, min(1.0, 2 * ln.mix), ln.mix))
    return Plan(sessions, translations, frozenset(voices), frozenset(own))
