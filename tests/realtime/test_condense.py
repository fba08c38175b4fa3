"""What the voice leaves out of a translation (pure)."""

import pytest

from babelcall.realtime.condense import condense


@pytest.mark.parametrize("text, spoken", [
    # a plural subject pronoun at a clause's start, before a verb that says the same
    ("porque ellos tienen plumas y pueden volar.", "porque tienen plumas y pueden volar."),
    ("Ellos tienen plumas.", "Tienen plumas."),
    ("dijo que ellas vienen mañana", "dijo que vienen mañana"),
    ("si nosotros podemos, ellos también.", "si podemos, ellos también."),
    ("Lo sé. Nosotros llegamos tarde", "Lo sé. Llegamos tarde"),
])
def test_a_subject_pronoun_the_verb_carries_is_not_said(text, spoken):
    assert condense(text, "es") == spoken


@pytest.mark.parametrize("text", [
    "las personas no piensan sobre ellos como dinosaurios",  # object of a preposition
    "Ana y ellos viven aquí.",  # a joint subject
    "para ellos es fácil",
    "que nosotros mismos hicimos",  # emphasis
    "porque ellos en la casa",  # no verb next
    "porque ellos, los pájaros, vuelan",
    "porque ellos",  # nothing after it
    "porque él tenía plumas",  # singular: 'tenía' is also 'yo'
])
def test_other_pronouns_are_kept(text):
    assert condense(text, "es") == text


def test_other_languages_are_spoken_as_translated():
    assert condense("porque ellos tienen", "pt") == "porque ellos tienen"
    assert condense("because they have", "en") == "because they have"


@pytest.mark.parametrize("before, spoken", [
    ("", "tienen plumas"),  # a phrase's first piece
    ("lentos,", "tienen plumas"),  # the piece before ended its clause
    ("porque", "tienen plumas"),
    ("y", "ellos tienen plumas"),  # a piece cut by its word count: 'Ana y' / 'ellos viven'
    ("para", "ellos tienen plumas"),
])
def test_a_piece_is_read_after_the_word_before_it(before, spoken):
    assert condense("ellos tienen plumas", "es", before=before) == spoken
